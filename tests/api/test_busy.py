"""A server out of database connections, or whose statement runs past its limit, answers 503
with ``Retry-After`` and an OperationOutcome, never 500, and changes nothing.

The in-process app over a store with one connection (plus one at peaks), a short wait for it
and a short statement limit; the connections are held by the test itself, the slow statement
is a lock held by another connection. The same through a real ``fhir-server serve`` process
is in ``tests/e2e/test_busy.py``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import asyncpg
import httpx
import pytest

from fhir_server.app import create_app
from fhir_server.settings import Settings
from fhir_server.storage.port import Store
from tests.api.conftest import BASE, FHIR, practitioner
from tests.storage.test_busy import limited


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    s = limited(database_url, statement_timeout_ms=500)
    await s.migrate()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
async def client(store: Store) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(validate_profiles=False, availability_preload=False), store=store)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5000))
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
            yield c


def assert_503(response: httpx.Response, code: str) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "1"
    assert response.headers["Content-Type"].startswith("application/fhir+json")
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert [i["code"] for i in outcome["issue"]] == [code]


async def post(client: httpx.AsyncClient, rpps: str) -> httpx.Response:
    return await client.post(
        "/Practitioner", json=practitioner(rpps), headers={"Content-Type": FHIR}
    )


async def found(client: httpx.AsyncClient, rpps: str) -> int:
    bundle = (await client.get("/Practitioner", params={"identifier": rpps})).json()
    return int(bundle["total"])


async def test_no_free_connection(client: httpx.AsyncClient, store: Store) -> None:
    async with AsyncExitStack() as held:
        await held.enter_async_context(store.writing())
        for _ in range(2 if store.dialect == "sqlite" else 1):
            await held.enter_async_context(store.reading())
        assert_503(await post(client, "810000000001"), "transient")
        assert_503(await client.get("/Practitioner", params={"name": "x"}), "transient")
    assert await found(client, "810000000001") == 0  # the refused create changed nothing
    assert (await post(client, "810000000001")).status_code == 201


async def test_a_statement_past_its_limit(
    client: httpx.AsyncClient, store: Store, database_url: str, tmp_path: Path
) -> None:
    """Another connection holds a lock: the request's statement waits past the limit."""
    if store.dialect == "sqlite":
        other = sqlite3.connect(tmp_path / "fhir.sqlite", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # the write lock: writers wait (busy timeout)
        try:
            assert_503(await post(client, "810000000002"), "transient")
        finally:
            other.close()
    else:
        other_pg = await asyncpg.connect(database_url.replace("postgresql+asyncpg", "postgresql"))
        try:
            async with other_pg.transaction():
                await other_pg.execute("LOCK TABLE resources IN ACCESS EXCLUSIVE MODE")
                assert_503(await post(client, "810000000002"), "timeout")
                assert_503(await client.get("/Practitioner", params={"name": "x"}), "timeout")
                assert_503(await client.get("/Practitioner/p1"), "timeout")
        finally:
            await other_pg.close()
    assert await found(client, "810000000002") == 0
    assert (await post(client, "810000000002")).status_code == 201
