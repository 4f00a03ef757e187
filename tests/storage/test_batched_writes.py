"""Buffered writes keep the semantics of row-at-a-time writes, on SQLite and PostgreSQL.

A write session buffers resource, history and index rows and writes them in bulk before its
next query and before commit. These tests check what a caller must not be able to tell:
reads in the session see the buffered rows, an error leaves nothing, pks follow put order,
and a create with a client-chosen id still reports a concurrent create from ``put``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from sqlalchemy import event, func, select

from fhir_server.core.errors import Conflict
from fhir_server.core.fhirtime import PARIS
from fhir_server.search.indexing.indexer import index_resource
from fhir_server.search.query.run import search_ids
from fhir_server.search.registry.parameters import default_registry
from fhir_server.storage import schema
from fhir_server.storage.port import Store, Stored, WriteSession

T0 = datetime(2027, 3, 22, 8, 0, tzinfo=UTC)
SYSTEM = "https://agenda.example.fr/creneau"
REGISTRY = default_registry()


def slot(n: int, status: str = "free") -> dict[str, Any]:
    return {
        "resourceType": "Slot",
        "id": f"s{n}",
        "identifier": [{"system": SYSTEM, "value": f"v{n}"}],
        "schedule": {"reference": "Schedule/sch1"},
        "status": status,
        "start": (T0 + timedelta(minutes=15 * n)).isoformat(),
        "end": (T0 + timedelta(minutes=15 * n + 15)).isoformat(),
    }


async def put(
    session: WriteSession,
    n: int,
    *,
    status: str = "free",
    previous: Stored | None = None,
    method: str = "POST",
) -> None:
    """Write slot ``n`` as the interactions do: stored JSON plus its index rows."""
    body = slot(n, status)
    version, method = (previous.version + 1, "PUT") if previous else (1, method)
    stored = Stored("Slot", body["id"], version, T0, False, orjson.dumps(body), method)
    await session.put(stored, index_resource(REGISTRY, body), previous)


async def find(session: WriteSession, *pairs: tuple[str, str]) -> list[str]:
    """What a conditional create/update asks before writing (the search planner)."""
    ids, _ = await search_ids(
        session, REGISTRY, "Slot", [*pairs, ("_count", "500")], default_tz=PARIS
    )
    return sorted(ids)


async def count(store: Store, table: Any) -> int:
    async with store.reading() as r:
        rows = await r.fetch(select(func.count()).select_from(table))
    return int(rows[0][0])


async def test_creates_updates_and_searches_in_one_transaction(store: Store) -> None:
    async with store.writing() as s:
        for n in range(100):
            await put(s, n)
        # A conditional operation in the middle sees the buffered creates ...
        assert await find(s, ("identifier", f"{SYSTEM}|v42")) == ["s42"]
        current = await s.current("Slot", "s42")
        assert current is not None and current.version == 1 and current.pk is not None
        await put(s, 42, status="busy", previous=current)
        # ... and the buffered update, with its index rows replaced.
        assert await find(s, ("status", "busy")) == ["s42"]
        for n in range(100, 150):
            await put(s, n)
        # ``current`` of a resource created since the last query still finds it.
        created_late = await s.current("Slot", "s120")
        assert created_late is not None and created_late.version == 1
        await put(s, 120, status="busy", previous=created_late)
        again = await s.current("Slot", "s120")
        assert again is not None and again.version == 2 and again.pk == created_late.pk
        assert await find(s, ("status", "busy")) == ["s120", "s42"]

    assert await count(store, schema.resources) == 150
    assert await count(store, schema.history) == 152
    s42 = await store.read("Slot", "s42")
    assert s42 is not None and s42.version == 2 and b'"busy"' in s42.content
    first = await store.vread("Slot", "s42", 1)
    assert first is not None and b'"free"' in first.content
    async with store.reading() as r:
        statuses = await r.fetch(
            select(schema.idx_token.c.code, func.count())
            .where(schema.idx_token.c.param == "status")
            .group_by(schema.idx_token.c.code)
        )
    assert dict((code, n) for code, n in statuses) == {"busy": 2, "free": 148}


async def test_pks_follow_put_order_and_grow_between_commits(store: Store) -> None:
    async with store.writing() as s:
        for n in range(120):
            # Every 10th create has a client-chosen id: written at once, between buffered ones.
            await put(s, n, method="PUT" if n % 10 == 0 else "POST")
    async with store.writing() as s:
        for n in range(120, 150):
            await put(s, n)
    async with store.writing() as s:
        scanned = await s.scan("Slot", 0, 1000)
    assert [r.res_id for r in scanned] == [f"s{n}" for n in range(150)]
    pks = [r.pk for r in scanned]
    assert pks == sorted(pks) and len(set(pks)) == 150


async def test_error_after_a_flush_leaves_nothing(store: Store) -> None:
    async with store.writing() as s:
        await put(s, 0)
    before = await store.read("Slot", "s0")
    with pytest.raises(RuntimeError):
        async with store.writing() as s:
            for n in range(1, 60):
                await put(s, n)
            current = await s.current("Slot", "s0")
            await put(s, 0, status="busy", previous=current)
            assert await find(s, ("status", "busy")) == ["s0"]  # flushed, not committed
            for n in range(60, 80):
                await put(s, n)
            raise RuntimeError("boom")
    assert await store.read("Slot", "s0") == before
    assert await store.read("Slot", "s1") is None
    assert await count(store, schema.resources) == 1
    assert await count(store, schema.history) == 1
    async with store.writing() as s:
        assert await find(s, ("status", "free")) == ["s0"]


async def test_conflict_at_commit_leaves_nothing(store: Store) -> None:
    async with store.writing() as s:
        await put(s, 7)
    with pytest.raises(Conflict, match="Slot/s7"):
        async with store.writing() as s:
            for n in range(20):
                await put(s, n)  # s7 again, with a server-assigned id: found at the flush
    assert await count(store, schema.resources) == 1
    assert await count(store, schema.history) == 1


async def test_create_with_a_client_id_conflicts_in_put(store: Store) -> None:
    async with store.writing() as s:
        await put(s, 5)
    async with store.writing() as s:
        for n in range(10, 20):
            await put(s, n)
        with pytest.raises(Conflict):
            await put(s, 5, method="PUT")
        # update-as-create goes on in the same transaction: update the existing version.
        current = await s.current("Slot", "s5")
        assert current is not None and current.version == 1
        await put(s, 5, status="busy", previous=current)
    assert await count(store, schema.resources) == 11
    s5 = await store.read("Slot", "s5")
    assert s5 is not None and s5.version == 2


@contextmanager
def statements(store: Store) -> Iterator[list[str]]:
    """The SQL statements the store's write engine sends while the block runs."""
    engine = store.engine.sync_engine  # type: ignore[attr-defined]
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(args[2])

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


async def test_a_transaction_of_many_creates_is_a_few_statements(store: Store) -> None:
    with statements(store) as seen:
        async with store.writing() as s:
            for n in range(500):
                await put(s, n)
    # resources, history, and one INSERT per index kind (whatever the number of slots).
    assert len(seen) <= 2 + len(schema.INDEX_TABLES), seen
    assert await count(store, schema.resources) == 500
