"""The embedded default: SQLite through aiosqlite, in WAL mode.

Writers take the database lock up front (``BEGIN IMMEDIATE``) so a read-then-write
transaction can never be overtaken by another writer, and an in-process lock queues writers
instead of letting them spin on ``SQLITE_BUSY``. Readers do not wait for writers (WAL).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from fhir_server.core.caller import SYSTEM, Caller
from fhir_server.storage import schema
from fhir_server.storage._sql import SqlStore, SqlWriteSession
from fhir_server.storage.port import Stored
from fhir_server.storage.rows import stored_from_row
from fhir_server.storage.types import utc_from_sqlite

# The columns of ``rows.STORED_COLUMNS`` / ``HISTORY_COLUMNS``, for the plain connection.
_COLUMNS = "res_type, res_id, version, last_updated, deleted, content"
_READ_SQL = f"SELECT pk, {_COLUMNS} FROM resources WHERE res_type = ? AND res_id = ?"
_VREAD_SQL = (
    f"SELECT res_pk, {_COLUMNS}, method FROM history"
    " WHERE res_type = ? AND res_id = ? AND version = ?"
)


def _row(row: tuple[Any, ...]) -> Stored:
    # Without SQLAlchemy, the timestamp is the text ``types.UtcDateTime`` reads.
    return stored_from_row((*row[:4], utc_from_sqlite(row[4]), *row[5:]))


def _on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event decide how transactions start (see _on_begin).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _engine(url: str, begin: str | None) -> AsyncEngine:
    """``begin`` None: autocommit reads, each statement on its own WAL snapshot."""
    engine = create_async_engine(url, pool_reset_on_return=None if begin is None else "rollback")
    event.listen(engine.sync_engine, "connect", _on_connect)
    if begin is not None:

        def _on_begin(conn: Any) -> None:
            conn.exec_driver_sql(begin)

        event.listen(engine.sync_engine, "begin", _on_begin)
    return engine


class SqliteWriteSession(SqlWriteSession):
    insert = staticmethod(sqlite_insert)


class SqliteStore(SqlStore):
    dialect = "sqlite"
    write_session_class = SqliteWriteSession

    def __init__(self, url: str) -> None:
        database = make_url(url).database
        self._path: str | None = None
        self._point: sqlite3.Connection | None = None
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
            self._path = str(Path(database).resolve())
        self._writer = _engine(url, "BEGIN IMMEDIATE")
        super().__init__(self._writer, _engine(url, None))
        self._write_lock = asyncio.Lock()

    def _write_engine(self) -> AsyncEngine:
        return self._writer

    @asynccontextmanager
    async def writing(self, caller: Caller = SYSTEM) -> AsyncIterator[SqlWriteSession]:
        async with self._write_lock, self._writer.begin() as conn:
            session = self.write_session_class(conn, caller, self.visible)
            yield session
            await session.finish()

    def _reader(self) -> sqlite3.Connection:
        # Point reads (read, vread) take microseconds in SQLite itself: a plain read-only
        # connection used from the event loop is ~50x cheaper than a hop to aiosqlite's
        # thread. WAL lets it read while a writer works; searches stay on aiosqlite.
        if self._point is None:
            self._point = sqlite3.connect(f"file:{self._path}?mode=ro", uri=True)
            self._point.execute("PRAGMA busy_timeout=5000")
        return self._point

    async def read(self, res_type: str, res_id: str, caller: Caller = SYSTEM) -> Stored | None:
        if self._path is None or self.visible(caller, schema.resources) is not None:
            return await super().read(res_type, res_id, caller)
        row = self._reader().execute(_READ_SQL, (res_type, res_id)).fetchone()
        return _row(row) if row else None

    async def vread(
        self, res_type: str, res_id: str, version: int, caller: Caller = SYSTEM
    ) -> Stored | None:
        if self._path is None or self.visible(caller, schema.history) is not None:
            return await super().vread(res_type, res_id, version, caller)
        row = self._reader().execute(_VREAD_SQL, (res_type, res_id, version)).fetchone()
        return _row(row) if row else None

    async def migrate(self) -> None:
        async with self._write_lock:
            await super().migrate()

    async def close(self) -> None:
        if self._point is not None:
            self._point.close()
            self._point = None
        await super().close()
        await self.read_engine.dispose()
