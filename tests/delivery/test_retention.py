"""The purge (``delivery/retention.py``) on SQLite and PostgreSQL: old sent rows go, failed
ones at their own limit, pending and leased rows never; expired Idempotency-Key records go;
batches are bounded; one process at a time; ``fhir-server purge [--dry-run]`` over a real
database."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import func, insert, select, update

from fhir_server.app import purge_targets
from fhir_server.core.fhirtime import utcnow
from fhir_server.delivery.queue import FAILED, PENDING, SENDING, SENT, Message, Queue, enqueue
from fhir_server.delivery.retention import LOCK_KEY, count, delivery_targets, purge
from fhir_server.interactions.idempotency import expired_keys
from fhir_server.settings import Settings
from fhir_server.storage import schema
from fhir_server.storage.port import Store
from tests.conftest import open_store
from tests.delivery.test_sender import until
from tests.servers import BIN, run, started, with_packages

D = schema.deliveries.c
K = schema.idempotency_keys.c
DAY = timedelta(days=1)
# what ``seed`` leaves after a purge with the default limits
KEPT = ["failed-new", "leased-old", "pending-old", "sent-late", "sent-new", "key:k-new"]


async def message(store: Store, key: str, state: str, age: timedelta, **extra: object) -> None:
    """A message of ``key`` in ``state``, created (and sent, when sent) ``age`` ago."""
    async with store.writing() as session:
        await enqueue(session, Message("sas", key, b"{}"))
    when = utcnow() - age
    values: dict[str, object] = {"state": state, "created": when, "next_attempt": when}
    if state == SENT:
        values["sent"] = when
    if state == SENDING:
        values |= {"lease_owner": "p9", "lease_until": when}
    async with store.writing() as session:
        await session.execute(
            update(schema.deliveries).where(D.key == key).values(**(values | extra))
        )


async def key_record(store: Store, key: str, age: timedelta) -> None:
    async with store.writing() as session:
        await session.execute(
            insert(schema.idempotency_keys).values(
                client_id="c",
                key=key,
                request_hash="0" * 64,
                status=201,
                res_type="Appointment",
                res_id=key,
                version=1,
                created=utcnow() - age,
            )
        )


async def keys_left(store: Store) -> list[str]:
    async with store.reading() as session:
        rows = await session.fetch(select(D.key).order_by(D.key))
        keys = await session.fetch(select(K.key).order_by(K.key))
    return [r[0] for r in rows] + [f"key:{r[0]}" for r in keys]


async def seed(store: Store) -> None:
    await message(store, "sent-old", SENT, 8 * DAY)
    await message(store, "sent-new", SENT, 6 * DAY)
    # sent just now, created long ago (an outage): kept from when it was sent
    await message(store, "sent-late", SENT, timedelta(0), created=utcnow() - 40 * DAY)
    await message(store, "failed-old", FAILED, 31 * DAY)
    await message(store, "failed-new", FAILED, 8 * DAY)
    await message(store, "pending-old", PENDING, 60 * DAY)
    await message(store, "leased-old", SENDING, 60 * DAY)
    await key_record(store, "k-old", timedelta(hours=25))
    await key_record(store, "k-new", timedelta(hours=23))


def targets(now: datetime | None = None) -> list:  # type: ignore[type-arg]
    now = now or utcnow()
    return [*delivery_targets(168, 720, now), expired_keys(timedelta(hours=24), now)]


async def test_purge_keeps_pending_leased_recent_and_failed_until_their_limit(
    store: Store,
) -> None:
    await seed(store)
    planned = await count(store, targets())
    assert planned.counts == {"sent messages": 1, "failed messages": 1, "idempotency keys": 1}
    assert len(await keys_left(store)) == 9  # counting deletes nothing
    done = await purge(store, targets())
    assert done.counts == planned.counts and not done.busy and done.complete
    assert await keys_left(store) == KEPT
    # both are still sent: the pending one, the leased one once its lease expired
    claimed = await Queue(store, "p1").claim(10, "sas")
    assert sorted(d.key for d in claimed) == ["leased-old", "pending-old"]
    assert (await purge(store, targets())).total == 0  # nothing more


async def test_the_settings_choose_the_limits(store: Store) -> None:
    await seed(store)
    settings = Settings(
        delivery_keep_hours=24 * 9, delivery_keep_failed_hours=24 * 7, idempotency_key_hours=26
    )
    done = await purge(store, purge_targets(settings))
    assert done.counts == {"sent messages": 0, "failed messages": 2, "idempotency keys": 0}


async def test_batches_are_bounded_and_the_rest_waits_for_the_next_run(store: Store) -> None:
    for i in range(7):
        await message(store, f"sent-{i}", SENT, 8 * DAY)
    seen: list[tuple[str, int]] = []
    done = await purge(
        store, targets(), batch=2, max_batches=3, progress=lambda n, c: seen.append((n, c))
    )
    assert done.counts["sent messages"] == 6 and not done.complete
    assert seen[:3] == [("sent messages", 2)] * 3
    done = await purge(store, targets(), batch=2, max_batches=3)
    assert done.counts["sent messages"] == 1 and done.complete
    assert await keys_left(store) == []


async def test_one_process_at_a_time_on_postgresql(pg_url: str) -> None:
    """SQLite serialises its writers: PostgreSQL needs the purge's advisory lock."""
    store = open_store(pg_url)
    await store.migrate()
    try:
        await message(store, "sent-old", SENT, 8 * DAY)
        async with store.writing() as other:  # another process purging
            assert (await other.fetch(select(func.pg_try_advisory_xact_lock(LOCK_KEY))))[0][0]
            done = await purge(store, targets())
        assert done.busy and done.total == 0
        assert await keys_left(store) == ["sent-old"]
        assert (await purge(store, targets())).counts["sent messages"] == 1  # lock released
    finally:
        await store.close()


async def test_the_purge_command_over_a_real_database(store: Store, database_url: str) -> None:
    await seed(store)
    env = {**os.environ, "FHIR_DATABASE_URL": database_url, "FHIR_LOG_FORMAT": "json"}
    dry = run([str(BIN / "fhir-server"), "purge", "--dry-run"], env)
    assert dry.returncode == 0, dry.stderr
    assert "would be deleted" in dry.stderr
    lines = {line.split("│")[1].strip(): line.split("│")[2].strip() for line in _rows(dry.stderr)}
    assert lines == {"sent messages": "1", "failed messages": "1", "idempotency keys": "1"}
    assert len(await keys_left(store)) == 9
    done = run([str(BIN / "fhir-server"), "purge"], env)
    assert done.returncode == 0, done.stderr
    assert len(await keys_left(store)) == 6
    again = run([str(BIN / "fhir-server"), "purge", "--dry-run"], env)
    assert {line.split("│")[2].strip() for line in _rows(again.stderr)} == {"0"}


def _rows(text: str) -> list[str]:
    """The table's body rows (rich draws them between │)."""
    return [
        line
        for line in text.splitlines()
        if line.count("│") >= 3 and ("messages" in line or "keys" in line)
    ]


async def test_a_serve_process_purges_in_the_background(
    store: Store, database_url: str, tmp_path: Path
) -> None:
    await seed(store)
    env = with_packages(
        {
            **os.environ,
            "FHIR_DATABASE_URL": database_url,
            "FHIR_AUTH": "none",
            "FHIR_AUDIT": "false",
            "FHIR_DELIVERY_PURGE_EVERY": "0.5",
        }
    )
    with started(env, tmp_path / "serve.log", "--migrate"):

        async def purged() -> bool:
            return len(await keys_left(store)) == 6

        await until(purged, seconds=20)
    assert await keys_left(store) == KEPT
