"""Transient database failures leave the store as ``Busy`` (503, ``Retry-After``), never as a
driver exception: no free connection, a statement over ``statement_timeout_ms``, a lock held
by another process. What the failed transaction wrote is rolled back, and the store serves
the next request normally."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from sqlalchemy import select, text

from fhir_server.core.errors import Busy
from fhir_server.storage import schema
from fhir_server.storage.port import Store, Stored
from fhir_server.storage.postgres import PostgresStore
from fhir_server.storage.sqlite import SqliteStore

# Counts to a billion: seconds on any engine, cancelled long before.
SLOW = text(
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000)"
    " SELECT count(*) FROM c"
)
LIMIT_MS = 300
POOL_WAIT = 0.3
T0 = datetime(2026, 6, 1, tzinfo=UTC)


def limited(url: str, **limits: Any) -> Store:
    options: dict[str, Any] = {
        "pool_size": 1,
        "pool_timeout": POOL_WAIT,
        "statement_timeout_ms": LIMIT_MS,
        **limits,
    }
    if url.startswith("sqlite"):
        return SqliteStore(url, **options)
    return PostgresStore(url, **options)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    s = limited(database_url)
    await s.migrate()
    try:
        yield s
    finally:
        await s.close()


def practitioner(res_id: str) -> Stored:
    body = f'{{"resourceType":"Practitioner","id":"{res_id}"}}'.encode()
    return Stored("Practitioner", res_id, 1, T0, False, body, "PUT")


def assert_busy(error: Busy, code: str) -> None:
    assert error.status == 503
    assert [i.code for i in error.issues] == [code]
    assert error.headers["Retry-After"] == "1"
    assert "SELECT" not in str(error)  # never the statement (its parameters may be patient data)


async def test_a_statement_over_the_limit_is_cancelled(store: Store) -> None:
    started = time.monotonic()
    with pytest.raises(Busy) as caught:
        async with store.reading() as session:
            await session.fetch(SLOW)
    assert time.monotonic() - started < 10
    assert_busy(caught.value, "timeout")
    async with store.reading() as session:  # the same (only) connection serves again
        assert [tuple(r) for r in await session.fetch(select(1))] == [(1,)]


async def test_a_write_cancelled_by_the_limit_changes_nothing(store: Store) -> None:
    with pytest.raises(Busy) as caught:
        async with store.writing() as session:
            await session.put(practitioner("p1"), {}, None)
            await session.fetch(SLOW)  # writes what is buffered first, then runs too long
    assert_busy(caught.value, "timeout")
    assert await store.read("Practitioner", "p1") is None
    async with store.writing() as session:
        await session.put(practitioner("p1"), {}, None)
    assert await store.read("Practitioner", "p1") is not None


async def test_no_free_connection(store: Store) -> None:
    """One connection plus one at peaks (PostgreSQL: shared by writers; SQLite: one writer
    at a time, two searching connections): a request past ``pool_timeout`` is Busy."""
    sqlite = store.dialect == "sqlite"
    async with AsyncExitStack() as held:
        await held.enter_async_context(store.writing())
        for _ in range(2 if sqlite else 1):
            await held.enter_async_context(store.reading())
        for attempt in (store.reading, store.writing):
            started = time.monotonic()
            with pytest.raises(Busy) as caught:
                async with attempt():
                    pass
            assert POOL_WAIT - 0.05 <= time.monotonic() - started < 5
            assert_busy(caught.value, "transient")
        if not sqlite:  # point reads use the pool too on PostgreSQL
            with pytest.raises(Busy):
                await store.read("Practitioner", "p1")
    async with store.writing() as session:  # all released: served again
        await session.put(practitioner("p2"), {}, None)
    assert await store.read("Practitioner", "p2") is not None


async def test_limits_are_off_by_default(database_url: str) -> None:
    """Stores built without limits (``load``, ``reindex``, tests) never cancel a statement."""
    s = limited(database_url, statement_timeout_ms=0)
    assert s.statement_timeout_ms == 0  # type: ignore[attr-defined]
    await s.migrate()
    try:
        quick = text(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 300000)"
            " SELECT count(*) FROM c"
        )
        async with s.reading() as session:
            assert [tuple(r) for r in await session.fetch(quick)] == [(300000,)]
    finally:
        await s.close()


async def test_sqlite_locked_by_another_process(tmp_path: Any) -> None:
    """Another process (here a plain connection) holds the write lock past the limit."""
    path = tmp_path / "fhir.sqlite"
    store = limited(f"sqlite+aiosqlite:///{path}")
    await store.migrate()
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(Busy) as caught:
            async with store.writing() as session:
                await session.put(practitioner("p1"), {}, None)
        assert_busy(caught.value, "transient")
        other.execute("ROLLBACK")
        assert await store.read("Practitioner", "p1") is None
        async with store.writing() as session:
            await session.put(practitioner("p1"), {}, None)
        assert await store.read("Practitioner", "p1") is not None
    finally:
        other.close()
        await store.close()


async def test_postgres_lock_wait_past_the_limit(pg_url: str) -> None:
    """statement_timeout covers waiting for a lock: both through SQLAlchemy and through the
    statements sent to asyncpg directly (point reads)."""
    store = limited(pg_url)
    await store.migrate()
    async with store.writing() as session:
        await session.put(practitioner("p1"), {}, None)
    other = await asyncpg.connect(pg_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        async with other.transaction():
            await other.execute("LOCK TABLE resources IN ACCESS EXCLUSIVE MODE")
            with pytest.raises(Busy) as caught:
                await store.read("Practitioner", "p1")
            assert_busy(caught.value, "timeout")
            with pytest.raises(Busy) as caught:
                async with store.reading() as session:
                    await session.fetch(select(schema.resources.c.pk))
            assert_busy(caught.value, "timeout")
        assert await store.read("Practitioner", "p1") is not None
    finally:
        await other.close()
        await store.close()


async def test_sqlite_statistics(tmp_path: Any) -> None:
    """``migrate`` and ``optimize`` take statistics (ANALYZE), which SQLite's planner needs
    to choose between indexes of one table."""
    path = tmp_path / "fhir.sqlite"
    store = SqliteStore(f"sqlite+aiosqlite:///{path}")
    await store.migrate()
    try:
        async with store.writing() as session:
            for n in range(50):
                rows = {"token": [{"param": "identifier", "system": "s", "code": str(n)}]}
                await session.put(practitioner(f"p{n}"), rows, None)
        await store.optimize()
        stats = sqlite3.connect(path).execute(
            "SELECT idx, stat FROM sqlite_stat1 WHERE tbl = 'idx_token'"
        )
        assert {idx for idx, _ in stats} == {"ix_idx_token_0", "ix_idx_token_res"}
    finally:
        await store.close()
