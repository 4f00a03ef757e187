"""Websocket pings across processes: two real ``serve`` processes on one PostgreSQL. A client
bound on process A is pinged for a write made through process B (and one bound on B too,
exactly once each); a write rolled back pings nobody; A's LISTEN connection, killed with
``pg_terminate_backend``, is connected again and the next pings arrive."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from fhir_server.storage.listen import APPLICATION_NAME, asyncpg_dsn
from tests.servers import BIN, run, started
from tests.subscriptions.test_e2e import FHIR, book, environment
from tests.subscriptions.test_websocket import websocket_subscription

pytestmark = pytest.mark.e2e


def ws_url(base: str) -> str:
    return base.replace("http://", "ws://") + "/$subscription-websocket"


async def frames(ws: ClientConnection, quiet: float) -> list[str]:
    """What ``ws`` receives until nothing comes for ``quiet`` seconds (at most 50)."""
    out: list[str] = []
    for _ in range(50):
        try:
            out.append(str(await asyncio.wait_for(ws.recv(), quiet)))
        except TimeoutError:
            break
    return out


async def bind(url: str, sub: str) -> ClientConnection:
    ws = await connect(url, open_timeout=10)
    await ws.send(f"bind {sub}")
    assert str(await asyncio.wait_for(ws.recv(), 5)) == f"bound {sub}"
    return ws


def rolled_back(base: str) -> None:
    """A transaction whose booked Appointment (matched, written) is undone by a later entry
    (an update whose If-Match is not the current version): 412, nothing stored."""
    appointment = {
        "resourceType": "Appointment",
        "status": "booked",
        "start": "2026-06-12T16:20:00+02:00",
        "end": "2026-06-12T16:40:00+02:00",
        "participant": [{"actor": {"display": "Dr Rollback"}, "status": "accepted"}],
    }
    schedule = {"resourceType": "Schedule", "id": "ws-sched", "actor": [{"display": "x"}]}
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": appointment, "request": {"method": "POST", "url": "Appointment"}},
            {
                "resource": schedule,
                "request": {"method": "PUT", "url": "Schedule/ws-sched", "ifMatch": 'W/"99"'},
            },
        ],
    }
    r = httpx.post(base, json=bundle, headers=FHIR, timeout=10)
    assert r.status_code in (409, 412), r.text
    found = httpx.get(f"{base}/Appointment?status=booked&_count=100", timeout=10)
    assert found.status_code == 200, found.text
    assert "Dr Rollback" not in found.text


async def listeners(dsn: str, pid: int) -> list[tuple[int, bool]]:
    """(backend pid, has run LISTEN) of the LISTEN connections of server process ``pid``."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT pid, query FROM pg_stat_activity WHERE application_name = $1",
            f"{APPLICATION_NAME} {pid}",
        )
    finally:
        await conn.close()
    return [(r["pid"], r["query"].startswith(("LISTEN", "SELECT 1"))) for r in rows]


async def reconnected(dsn: str, pid: int, killed: int) -> bool:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if any(p != killed and ready for p, ready in await listeners(dsn, pid)):
            return True
        await asyncio.sleep(0.1)
    return False


def test_pings_cross_processes_never_for_a_rollback_and_survive_a_killed_listener(
    pg_url: str, tmp_path: Path
) -> None:
    env = environment(
        pg_url, FHIR_SUBSCRIPTION_LISTEN_CHECK="0.5", FHIR_SUBSCRIPTION_LISTEN_BACKOFF_MAX="0.5"
    )
    assert run([str(BIN / "fhir-server"), "migrate"], env).returncode == 0
    dsn = asyncpg_dsn(pg_url)
    with (
        started(env, tmp_path / "a.log") as a,
        started(env, tmp_path / "b.log") as b,
    ):
        sub = websocket_subscription(a.base)

        async def scenario() -> None:
            on_a = await bind(ws_url(a.base), sub)
            on_b = await bind(ws_url(b.base), sub)
            try:
                # B writes: both processes' clients hear it, once each
                await asyncio.to_thread(book, b.base)
                assert await frames(on_a, 1.5) == [f"ping {sub}"]
                assert await frames(on_b, 0.2) == [f"ping {sub}"]
                # a rollback, then a commit: one ping only (the commit's)
                await asyncio.to_thread(rolled_back, b.base)
                await asyncio.to_thread(book, b.base)
                assert await frames(on_a, 1.5) == [f"ping {sub}"]
                assert await frames(on_b, 0.2) == [f"ping {sub}"]
                # A's listening connection killed: A connects again, pings come again
                (killed, _ready), *_ = await listeners(dsn, a.proc.pid)
                conn = await asyncpg.connect(dsn)
                try:
                    assert await conn.fetchval("SELECT pg_terminate_backend($1)", killed)
                finally:
                    await conn.close()
                assert await reconnected(dsn, a.proc.pid, killed), a.log.read_text()
                await asyncio.to_thread(book, b.base)
                assert await frames(on_a, 1.5) == [f"ping {sub}"]
            finally:
                await on_a.close()
                await on_b.close()

        asyncio.run(scenario())
    assert "listen connection lost" in a.log.read_text()


def test_serve_workers_each_listen_and_every_connection_is_pinged(
    pg_url: str, tmp_path: Path
) -> None:
    """``serve --workers 2``: the kernel spreads connections over both workers (each its own
    socket, SO_REUSEPORT); every one of them hears each write, whichever worker made it."""
    env = environment(pg_url)
    assert run([str(BIN / "fhir-server"), "migrate"], env).returncode == 0
    dsn = asyncpg_dsn(pg_url)
    with started(env, tmp_path / "serve.log", "--workers", "2") as served:
        sub = websocket_subscription(served.base)

        async def listening() -> int:
            conn = await asyncpg.connect(dsn)
            try:
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    count = await conn.fetchval(
                        "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE $1",
                        f"{APPLICATION_NAME} %",
                    )
                    if count >= 2:
                        break
                    await asyncio.sleep(0.1)
                return int(count)
            finally:
                await conn.close()

        async def scenario() -> tuple[int, list[list[str]]]:
            workers = await listening()
            clients = [await bind(ws_url(served.base), sub) for _ in range(8)]
            try:
                for _ in range(3):  # three writes: each through whichever worker takes it
                    await asyncio.to_thread(book, served.base)
                # the pings wait in each socket: the first read waits longest
                heard = [await frames(ws, 2.0 if i == 0 else 0.3) for i, ws in enumerate(clients)]
                return workers, heard
            finally:
                for ws in clients:
                    await ws.close()

        workers, heard = asyncio.run(scenario())
    assert workers == 2
    assert heard == [[f"ping {sub}"] * 3 for _ in range(8)]
