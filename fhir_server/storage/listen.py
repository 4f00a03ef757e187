"""PostgreSQL ``LISTEN``/``NOTIFY`` between server processes sharing one database.

A writer calls ``notify`` inside its transaction: PostgreSQL delivers the notification to
every listening connection only when that transaction commits (never if it rolls back, or
for a savepoint rolled back), so a listener never hears of a write nobody can read.

Each process keeps ONE dedicated connection (``Listener``, outside the pool: a pooled
connection goes back to the pool and would stop listening) that ``LISTEN``s on a channel
and hands each payload to a callback. When the connection drops (server restart,
``pg_terminate_backend``, a network cut), it connects again with capped backoff; what was
notified while it was away is lost (the websocket channel's clients search again:
docs/subscriptions.md)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from typing import Any

import asyncpg
import structlog
from sqlalchemy import text
from sqlalchemy.engine import URL, make_url

from fhir_server.storage.port import WriteSession

log = structlog.get_logger("fhir_server.storage")
_NOTIFY = text("SELECT pg_notify(:channel, :payload)")
APPLICATION_NAME = "fhir-server listen"  # and the pid: pg_stat_activity names each process's
MAX_PAYLOAD = 7999  # PostgreSQL refuses a payload of 8000 bytes or more


async def notify(session: WriteSession, channel: str, payload: str) -> None:
    """Tell every listener of ``channel`` once ``session`` commits (PostgreSQL only)."""
    if len(payload.encode()) > MAX_PAYLOAD:
        raise ValueError("a notification payload must stay under 8000 bytes")
    await session.execute(_NOTIFY, {"channel": channel, "payload": payload})


def asyncpg_dsn(url: str | URL) -> str:
    """The plain ``postgresql://`` DSN asyncpg connects with, from a SQLAlchemy URL."""
    parsed = make_url(url) if isinstance(url, str) else url
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


class Listener:
    """One connection listening on ``channel``: ``deliver(payload)`` per notification.

    ``start``/``stop`` follow the app's lifespan. ``backoff_first`` doubles up to
    ``backoff_max`` between failed connections; ``check_every`` seconds an idle connection
    is probed (``SELECT 1``) so a half-open one (no FIN ever received) is replaced too."""

    def __init__(
        self,
        dsn: str,
        channel: str,
        deliver: Callable[[str], None],
        *,
        backoff_first: float = 0.1,
        backoff_max: float = 5.0,
        check_every: float = 10.0,
        connect_timeout: float = 10.0,
    ) -> None:
        self.dsn = dsn
        self.channel = channel
        self.deliver = deliver
        self.backoff_first = backoff_first
        self.backoff_max = backoff_max
        self.check_every = check_every
        self.connect_timeout = connect_timeout
        self.connections = 0  # how many times it has (re)connected: tests and logs
        self.listening = asyncio.Event()  # set while a connection listens
        self._task: asyncio.Task[None] | None = None
        self._conn: Any = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"listen {self.channel}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._close()

    async def _run(self) -> None:
        delay = self.backoff_first
        while True:  # until stop() cancels it; each turn waits at least ``delay``
            started = time.monotonic()
            try:
                await self._listen_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "listen connection lost",
                    channel=self.channel,
                    error=type(exc).__name__,
                    detail=str(exc)[:200],
                )
            finally:
                self.listening.clear()
                await self._close()
            if time.monotonic() - started > self.backoff_max:
                delay = self.backoff_first  # it listened a while: a fresh failure
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.backoff_max)

    async def _listen_once(self) -> None:
        lost = asyncio.Event()
        conn = await asyncpg.connect(
            self.dsn,
            timeout=self.connect_timeout,
            server_settings={"application_name": f"{APPLICATION_NAME} {os.getpid()}"},
        )
        self._conn = conn
        conn.add_termination_listener(lambda _conn: lost.set())
        await conn.add_listener(self.channel, self._on_notification)
        self.connections += 1
        self.listening.set()
        log.info("listening", channel=self.channel, connections=self.connections)
        while not lost.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lost.wait(), self.check_every)
            if not lost.is_set():
                await asyncio.wait_for(conn.fetchval("SELECT 1"), self.check_every)
        raise ConnectionError("the listening connection was closed")

    def _on_notification(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            self.deliver(payload)
        except Exception:
            log.exception("notification not delivered", channel=self.channel)

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                await asyncio.wait_for(conn.close(), 2)
            except Exception:
                conn.terminate()
