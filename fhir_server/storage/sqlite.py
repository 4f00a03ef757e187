"""The embedded default: SQLite through aiosqlite, in WAL mode.

Writers take the database lock up front (``BEGIN IMMEDIATE``) so a read-then-write
transaction can never be overtaken by another writer, and an in-process lock queues writers
instead of letting them spin on ``SQLITE_BUSY``. Readers do not wait for writers (WAL).

Time limits: a writer waits ``pool_timeout`` for its turn (a search, as long for a
connection); a statement runs at most ``statement_timeout_ms`` (SQLite's progress handler
interrupts it, which rolls it back) and another process's write lock is waited for as long.
Each ends as a 503 (``SqlStore.transient``). ``migrate`` and ``optimize`` take statistics
(``ANALYZE``): without them SQLite's planner may read a whole index for every row of a join.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from auth.policy import Policy
from fhir_server.core.caller import SYSTEM, Caller
from fhir_server.core.errors import FhirError
from fhir_server.storage._sql import SqlStore, SqlWriteSession, busy
from fhir_server.storage.migrate import upgrade
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


_CHECK_EVERY = 100_000  # virtual-machine steps between two looks at the clock (~1 ms)
_ANALYSIS_LIMIT = 1000  # rows ANALYZE reads per index: milliseconds whatever the size
_UNLIMITED = "fhir_unlimited"  # execution option: no time limit (schema migrations)


class _Deadline:
    """When the statement running on one connection must stop (``time.monotonic``); read by
    SQLite's progress handler in the connection's thread."""

    __slots__ = ("at",)

    def __init__(self) -> None:
        self.at = math.inf

    def passed(self) -> bool:
        return time.monotonic() > self.at


def _limit_statements(engine: AsyncEngine, seconds: float) -> None:
    """Interrupt a statement after ``seconds`` (rows included: aiosqlite fetches them inside
    the execute call), and wait as long for another process's write lock. The clock runs
    between the cursor events only, so never while SQLAlchemy commits or rolls back."""

    def connect(dbapi_connection: Any, record: Any) -> None:
        deadline = record.info["deadline"] = _Deadline()
        dbapi_connection.run_async(lambda c: c.set_progress_handler(deadline.passed, _CHECK_EVERY))
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={round(seconds * 1000)}")
        cursor.close()

    def start(conn: Any, _cursor: Any, _sql: Any, _params: Any, context: Any, _many: Any) -> None:
        if context is None or not context.execution_options.get(_UNLIMITED):
            conn.connection.info["deadline"].at = time.monotonic() + seconds

    def stop(conn: Any, *_: Any) -> None:
        conn.connection.info["deadline"].at = math.inf

    def failed(context: Any) -> None:
        if context.connection is not None and not context.connection.invalidated:
            stop(context.connection)

    sync = engine.sync_engine
    event.listen(sync, "connect", connect)
    event.listen(sync, "before_cursor_execute", start)
    event.listen(sync, "after_cursor_execute", stop)
    event.listen(sync, "handle_error", failed)


def _engine(
    url: str, begin: str | None, statement_ms: int, pool: dict[str, Any] | None = None
) -> AsyncEngine:
    """``begin`` None: autocommit reads, each statement on its own WAL snapshot."""
    engine = create_async_engine(
        url, pool_reset_on_return=None if begin is None else "rollback", **(pool or {})
    )
    event.listen(engine.sync_engine, "connect", _on_connect)
    if statement_ms:
        _limit_statements(engine, statement_ms / 1000)
    if begin is not None:

        def _on_begin(conn: Any) -> None:
            conn.exec_driver_sql(begin)

        event.listen(engine.sync_engine, "begin", _on_begin)
    return engine


class SqliteWriteSession(SqlWriteSession):
    insert = staticmethod(sqlite_insert)
    # The transaction holds the database's write lock from BEGIN IMMEDIATE: no other writer
    # can create an id that ``prefetch`` found free before this transaction's flush.
    concurrent_creates = False


class SqliteStore(SqlStore):
    dialect = "sqlite"
    write_session_class = SqliteWriteSession

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 5,
        pool_timeout: float = 30.0,
        statement_timeout_ms: int = 0,
        policy: Policy | None = None,
    ) -> None:
        database = make_url(url).database
        self._path: str | None = None
        self._point: sqlite3.Connection | None = None
        pool: dict[str, Any] | None = None
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
            self._path = str(Path(database).resolve())
            # The connections that search; one writer at a time needs no more than one.
            pool = {"pool_size": pool_size, "max_overflow": pool_size}
            pool["pool_timeout"] = pool_timeout
        self._writer = _engine(url, "BEGIN IMMEDIATE", statement_timeout_ms)
        super().__init__(
            self._writer,
            _engine(url, None, statement_timeout_ms, pool),
            pool_timeout=pool_timeout,
            statement_timeout_ms=statement_timeout_ms,
            policy=policy,
        )
        self._write_lock = asyncio.Lock()

    def _write_engine(self) -> AsyncEngine:
        return self._writer

    def transient(self, exc: Exception) -> FhirError | None:
        error = super().transient(exc)
        orig = exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc
        if error is None and isinstance(orig, sqlite3.OperationalError):
            name = getattr(orig, "sqlite_errorname", "")
            if name == "SQLITE_INTERRUPT":  # only the progress handler interrupts
                error = self.statement_timed_out()
            elif name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
                error = busy("the database is locked by another process; retry later")
        return error

    @asynccontextmanager
    async def writing(self, caller: Caller = SYSTEM) -> AsyncIterator[SqlWriteSession]:
        with self.translating():
            await self._turn_to_write()
            try:
                async with self._writer.begin() as conn:
                    session = self.write_session_class(
                        conn, caller, self.visible, self.scope(caller)
                    )
                    yield session
                    await session.finish()
            finally:
                self._write_lock.release()
            session.committed()

    async def _turn_to_write(self) -> None:
        """The in-process writers' queue: waiting longer than ``pool_timeout`` is a 503,
        as waiting for a connection is."""
        try:
            async with asyncio.timeout(self.pool_timeout):
                await self._write_lock.acquire()
        except TimeoutError:
            raise busy(
                f"the server is busy (no turn to write within {self.pool_timeout:g} s); retry later"
            ) from None

    def _reader(self) -> sqlite3.Connection:
        # Point reads (read, vread) take microseconds in SQLite itself: a plain read-only
        # connection used from the event loop is ~50x cheaper than a hop to aiosqlite's
        # thread. WAL lets it read while a writer works; searches stay on aiosqlite.
        if self._point is None:
            self._point = sqlite3.connect(f"file:{self._path}?mode=ro", uri=True)
            self._point.execute("PRAGMA busy_timeout=5000")
        return self._point

    async def read(self, res_type: str, res_id: str, caller: Caller = SYSTEM) -> Stored | None:
        fast = self._fast(caller, res_type)
        if fast is False:
            return None
        if self._path is None or fast is None:
            return await super().read(res_type, res_id, caller)
        with self.translating():
            row = self._reader().execute(_READ_SQL, (res_type, res_id)).fetchone()
        return _row(row) if row else None

    async def vread(
        self, res_type: str, res_id: str, version: int, caller: Caller = SYSTEM
    ) -> Stored | None:
        fast = self._fast(caller, res_type)
        if fast is False:
            return None
        if self._path is None or fast is None:
            return await super().vread(res_type, res_id, version, caller)
        with self.translating():
            row = self._reader().execute(_VREAD_SQL, (res_type, res_id, version)).fetchone()
        return _row(row) if row else None

    async def migrate(self) -> None:
        """Upgrade the schema, then take statistics (the server runs this at start)."""
        async with self._write_lock, self._writer.begin() as conn:
            # A migration may rewrite whole tables: not a request's statement.
            await conn.execution_options(**{_UNLIMITED: True})
            await conn.run_sync(upgrade)
            await self._analyze(conn)

    async def optimize(self) -> None:
        async with self._write_lock, self._writer.begin() as conn:
            await self._analyze(conn)
        # Other connections keep the statistics they loaded: open new ones.
        await self.read_engine.dispose()
        if self._point is not None:
            self._point.close()
            self._point = None

    @staticmethod
    async def _analyze(conn: Any) -> None:
        await conn.exec_driver_sql(f"PRAGMA analysis_limit={_ANALYSIS_LIMIT}")
        await conn.exec_driver_sql("ANALYZE")

    async def close(self) -> None:
        if self._point is not None:
            self._point.close()
            self._point = None
        await super().close()
        await self.read_engine.dispose()
