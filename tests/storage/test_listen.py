"""LISTEN/NOTIFY on a real PostgreSQL (``storage/listen.py``): a notification issued in a
write transaction reaches the listener only when that transaction commits, never when it
or its savepoint rolls back; a listener whose connection is killed connects again; a
payload too long is refused before PostgreSQL sees it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import asyncpg
import pytest

from fhir_server.storage.listen import APPLICATION_NAME, Listener, asyncpg_dsn, notify
from fhir_server.storage.postgres import PostgresStore

CHANNEL = "test_channel"


class Boom(Exception):
    pass


@pytest.fixture
async def pg_store(pg_url: str) -> AsyncIterator[PostgresStore]:
    store = PostgresStore(pg_url, pool_size=2)
    try:
        yield store
    finally:
        await store.close()


async def until(condition: Callable[[], bool], seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.02)
    return False


async def test_only_committed_notifications_arrive(pg_store: PostgresStore, pg_url: str) -> None:
    heard: list[str] = []
    listener = Listener(asyncpg_dsn(pg_url), CHANNEL, heard.append, check_every=0.5)
    listener.start()
    try:
        assert await until(listener.listening.is_set)
        with pytest.raises(Boom):
            async with pg_store.writing() as session:
                await notify(session, CHANNEL, "rolled-back")
                raise Boom
        async with pg_store.writing() as session:
            with pytest.raises(Boom):
                async with session.savepoint():
                    await notify(session, CHANNEL, "savepoint-undone")
                    raise Boom
            await notify(session, CHANNEL, "committed")
            await asyncio.sleep(0.3)
            assert heard == []  # not before the commit
        assert await until(lambda: heard == ["committed"])
        await asyncio.sleep(0.3)
        assert heard == ["committed"]
    finally:
        await listener.stop()
    assert not listener.listening.is_set()


async def test_a_killed_connection_is_replaced(pg_store: PostgresStore, pg_url: str) -> None:
    heard: list[str] = []
    dsn = asyncpg_dsn(pg_url)
    listener = Listener(dsn, CHANNEL, heard.append, backoff_first=0.05, check_every=0.5)
    listener.start()
    try:
        assert await until(listener.listening.is_set)
        admin = await asyncpg.connect(dsn)
        try:
            killed = await admin.fetchval(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name LIKE $1",
                f"{APPLICATION_NAME} %",
            )
            assert killed
        finally:
            await admin.close()
        assert await until(lambda: listener.connections == 2)
        assert await until(listener.listening.is_set)
        async with pg_store.writing() as session:
            await notify(session, CHANNEL, "after")
        assert await until(lambda: heard == ["after"])
    finally:
        await listener.stop()


async def test_a_delivery_that_raises_does_not_stop_the_listener(
    pg_store: PostgresStore, pg_url: str
) -> None:
    heard: list[str] = []

    def deliver(payload: str) -> None:
        if payload == "bad":
            raise ValueError(payload)
        heard.append(payload)

    listener = Listener(asyncpg_dsn(pg_url), CHANNEL, deliver)
    listener.start()
    try:
        assert await until(listener.listening.is_set)
        for payload in ("bad", "good"):
            async with pg_store.writing() as session:
                await notify(session, CHANNEL, payload)
        assert await until(lambda: heard == ["good"])
        assert listener.connections == 1
    finally:
        await listener.stop()


async def test_a_payload_of_8000_bytes_is_refused(pg_store: PostgresStore) -> None:
    with pytest.raises(ValueError, match="8000"):
        async with pg_store.writing() as session:
            await notify(session, CHANNEL, "é" * 4000)
