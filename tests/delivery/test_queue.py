"""The delivery queue (the outbox), on SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from fhir_server.delivery.queue import (
    FAILED,
    PENDING,
    SENDING,
    SENT,
    Backoff,
    Message,
    Queue,
    enqueue,
)
from fhir_server.storage import schema
from fhir_server.storage.port import Store, Stored

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
NOW = Backoff(first=0.0, cap=0.0)  # retries due at once: no waiting in unit tests


def appointment(res_id: str, version: int) -> Message:
    return Message(
        channel="sas",
        key=f"Appointment/{res_id}",
        res_type="Appointment",
        res_id=res_id,
        version=version,
        body=b'{"resourceType":"Appointment","v":%d}' % version,
    )


async def put_all(store: Store, *messages: Message) -> None:
    async with store.writing() as session:
        for message in messages:
            await enqueue(session, message)


async def rows(store: Store) -> list[tuple[int, str, str, int]]:
    d = schema.deliveries.c
    async with store.reading() as session:
        found = await session.fetch(select(d.id, d.key, d.state, d.attempts).order_by(d.id))
    return [tuple(r) for r in found]  # type: ignore[misc]


async def test_enqueue_commits_with_the_write_or_not_at_all(store: Store) -> None:
    stored = Stored("Appointment", "a1", 1, T0, False, b"{}", "PUT")
    with pytest.raises(RuntimeError):
        async with store.writing() as session:
            await session.put(stored, {}, None)
            await enqueue(session, appointment("a1", 1))
            raise RuntimeError("the write fails after the enqueue")
    assert await rows(store) == []
    assert await store.read("Appointment", "a1") is None
    async with store.writing() as session:
        await session.put(stored, {}, None)
        await enqueue(session, appointment("a1", 1))
    assert [r[1:3] for r in await rows(store)] == [("Appointment/a1", PENDING)]


async def test_a_savepoint_undoes_its_enqueue(store: Store) -> None:
    async with store.writing() as session:
        await enqueue(session, appointment("kept", 1))
        with pytest.raises(RuntimeError):
            async with session.savepoint():
                await enqueue(session, appointment("undone", 1))
                raise RuntimeError("undo")
    assert [r[1] for r in await rows(store)] == ["Appointment/kept"]


async def test_after_commit_runs_only_after_a_commit(store: Store) -> None:
    calls: list[str] = []
    with pytest.raises(RuntimeError):
        async with store.writing() as session:
            session.after_commit(lambda: calls.append("rolled back"))
            raise RuntimeError("no commit")
    async with store.writing() as session:
        session.after_commit(lambda: calls.append("committed"))
        assert calls == []
    assert calls == ["committed"]


async def test_claim_keeps_the_order_of_each_key(store: Store) -> None:
    await put_all(store, appointment("a", 1), appointment("b", 1), appointment("a", 2))
    queue = Queue(store, "p1", NOW)
    first = await queue.claim(10)
    # a/2 waits for a/1, b/1 is independent
    assert [(d.key, d.version) for d in first] == [("Appointment/a", 1), ("Appointment/b", 1)]
    assert await queue.claim(10) == []  # a/1 is being sent: a/2 still waits
    a1, b1 = first
    assert await queue.sent(b1, 201)
    assert await queue.claim(10) == []
    assert await queue.retry(a1, "HTTP 503", 503)  # a/1 pending again: a/2 still waits
    again = await queue.claim(10)
    assert [(d.key, d.version, d.attempts) for d in again] == [("Appointment/a", 1, 2)]
    assert await queue.sent(again[0], 201)
    last = await queue.claim(10)
    assert [(d.key, d.version) for d in last] == [("Appointment/a", 2)]
    assert await queue.sent(last[0], 200)
    assert [r[2] for r in await rows(store)] == [SENT, SENT, SENT]


async def test_a_failed_message_is_not_retried_and_does_not_block_its_key(store: Store) -> None:
    await put_all(store, appointment("a", 1), appointment("a", 2))
    queue = Queue(store, "p1", NOW)
    (a1,) = await queue.claim(10)
    assert await queue.failed(a1, "HTTP 400: invalid Appointment", 400)
    (a2,) = await queue.claim(10)
    assert a2.version == 2
    status = (await queue.status())["sas"]
    assert status.counts[FAILED] == 1 and status.counts[SENDING] == 1
    assert status.last_error == "HTTP 400: invalid Appointment"
    assert status.last_error_key == "Appointment/a"
    assert [d.id for d in await queue.failures()] == [a1.id]


async def test_an_expired_lease_is_claimed_again_and_the_old_owner_loses(store: Store) -> None:
    await put_all(store, appointment("a", 1))
    dead = Queue(store, "killed-process", NOW)
    (taken,) = await dead.claim(10, lease=0.0)  # expires at once
    alive = Queue(store, "p2", NOW)
    (again,) = await alive.claim(10)
    assert again.id == taken.id and again.attempts == 2 and again.lease_owner == "p2"
    assert not await dead.sent(taken, 201)  # its lease is gone
    assert await alive.sent(again, 201)
    assert [r[2] for r in await rows(store)] == [SENT]


async def test_a_live_lease_is_not_claimed_by_another(store: Store) -> None:
    await put_all(store, appointment("a", 1))
    (taken,) = await Queue(store, "p1", NOW).claim(10, lease=60.0)
    assert await Queue(store, "p2", NOW).claim(10) == []
    assert taken.state == SENDING


async def test_release_gives_a_message_back_untried(store: Store) -> None:
    await put_all(store, appointment("a", 1))
    queue = Queue(store, "p1", NOW)
    (taken,) = await queue.claim(10)
    assert await queue.release(taken)
    (again,) = await queue.claim(10)
    assert again.attempts == 1


async def test_retry_waits_for_the_backoff(store: Store) -> None:
    await put_all(store, appointment("a", 1))
    queue = Queue(store, "p1", Backoff(first=3600.0, cap=7200.0))
    (taken,) = await queue.claim(10)
    assert await queue.retry(taken, "connection refused")
    assert await queue.claim(10) == []
    status = (await queue.status())["sas"]
    assert status.counts[PENDING] == 1 and status.retrying == 1
    assert status.last_error == "connection refused"
    assert status.oldest_unsent is not None


async def test_claim_filters_by_channel_prefix(store: Store) -> None:
    await put_all(
        store,
        appointment("a", 1),
        Message(channel="subscription/s1", key="Subscription/s1", body=b"{}"),
        Message(channel="subscription%", key="k", body=b"{}"),
    )
    queue = Queue(store, "p1", NOW)
    claimed = await queue.claim(10, channel_prefix="subscription/")
    assert [d.channel for d in claimed] == ["subscription/s1"]
    assert set(await queue.status()) == {"sas", "subscription/s1", "subscription%"}
    assert set(await queue.status("subscription/")) == {"subscription/s1"}


async def test_headers_and_not_before_round_trip(store: Store) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    await put_all(
        store,
        Message(channel="c", key="k1", body=b"x", headers={"X-A": "1"}),
        Message(channel="c", key="k2", body=b"y", not_before=later),
    )
    (claimed,) = await Queue(store, "p1", NOW).claim(10)
    assert claimed.headers == {"X-A": "1"} and claimed.body == b"x"


async def test_concurrent_claimers_never_share_a_message(store: Store) -> None:
    await put_all(store, *(appointment(f"r{i}", 1) for i in range(60)))
    queues = [Queue(store, f"p{i}", NOW) for i in range(4)]
    seen: list[int] = []

    async def drain(queue: Queue) -> None:
        for _ in range(100):  # bounded
            claimed = await queue.claim(5)
            if not claimed:
                return
            for d in claimed:
                seen.append(d.id)
                assert await queue.sent(d, 201)

    await asyncio.gather(*(drain(q) for q in queues))
    assert sorted(seen) == sorted(set(seen)) and len(seen) == 60


def test_backoff_doubles_with_jitter_up_to_its_cap() -> None:
    backoff = Backoff(first=1.0, cap=10.0)
    rng = random.Random(7)
    for attempts, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 10.0), (500, 10.0)]:
        for _ in range(20):
            assert ceiling / 2 <= backoff.delay(attempts, rng) <= ceiling
