"""The embedded default: SQLite through aiosqlite, in WAL mode.

Writers take the database lock up front (``BEGIN IMMEDIATE``) so a read-then-write
transaction can never be overtaken by another writer, and an in-process lock queues writers
instead of letting them spin on ``SQLITE_BUSY``. Readers do not wait for writers (WAL).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from fhir_server.storage._sql import SqlStore, SqlWriteSession


def _on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event decide how transactions start (see _on_begin).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _engine(url: str, begin: str) -> AsyncEngine:
    engine = create_async_engine(url)
    event.listen(engine.sync_engine, "connect", _on_connect)

    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql(begin)

    event.listen(engine.sync_engine, "begin", _on_begin)
    return engine


class SqliteStore(SqlStore):
    dialect = "sqlite"
    write_session_class = SqlWriteSession

    def __init__(self, url: str) -> None:
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        super().__init__(_engine(url, "BEGIN"))
        self._writer = _engine(url, "BEGIN IMMEDIATE")
        self._write_lock = asyncio.Lock()

    def _write_engine(self) -> AsyncEngine:
        return self._writer

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[SqlWriteSession]:
        async with self._write_lock, self._writer.begin() as conn:
            yield self.write_session_class(conn)

    async def migrate(self) -> None:
        async with self._write_lock:
            await super().migrate()

    async def close(self) -> None:
        await super().close()
        await self._writer.dispose()
