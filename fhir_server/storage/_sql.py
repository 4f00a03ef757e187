"""What the SQLite and PostgreSQL adapters share: SQLAlchemy Core over ``schema``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime
from functools import cache
from typing import Any

import structlog
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Table,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import Executable, FromClause

from auth.policy import EVERYTHING, Policy, ReadScope
from fhir_server.core import errors
from fhir_server.core.caller import SYSTEM, Caller
from fhir_server.core.errors import FhirError
from fhir_server.storage import access, schema
from fhir_server.storage.arrays import any_in
from fhir_server.storage.migrate import SchemaState, schema_state, upgrade
from fhir_server.storage.port import HistoryPage, IndexRows, KeyRecord, Stored
from fhir_server.storage.rows import (
    HISTORY_COLUMNS,
    OWNED_COLUMNS,
    STORED_COLUMNS,
    owned_from_row,
    stored_from_row,
)

log = structlog.get_logger(__name__)

_RES = schema.resources
_HIST = schema.history
_WATCH = schema.idx_watch
_VERSIONS = schema.watch_versions
_KEYS = schema.idempotency_keys


# -- transient failures: 503 with Retry-After, never a 500 ------------------------------------

RETRY_AFTER_SECONDS = 1


def busy(diagnostics: str, *, code: str = "transient") -> FhirError:
    """The request was not carried out (a write rolled back, nothing changed): retry later."""
    error: FhirError = errors.busy(diagnostics, code=code)
    error.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return error


# What limits the rows of a table to a caller's (``SqlStore.visible``); None: all of them.
Visibility = Callable[[Caller, FromClause], ColumnElement[bool] | None]


def _everything(caller: Caller, rows: FromClause) -> ColumnElement[bool] | None:
    return None


class SqlReadSession:
    def __init__(
        self,
        conn: AsyncConnection,
        caller: Caller = SYSTEM,
        visibility: Visibility = _everything,
        scope: ReadScope = EVERYTHING,
    ) -> None:
        self.conn = conn
        self.dialect = conn.dialect.name
        self.caller = caller
        self.scope = scope
        self._visibility = visibility

    def visible(self, rows: FromClause) -> ColumnElement[bool] | None:
        return self._visibility(self.caller, rows)

    async def fetch(
        self, statement: Executable, params: Mapping[str, Any] | None = None
    ) -> Sequence[Row[Any]]:
        result = await self.conn.execute(statement, params)
        return result.fetchall()


# A write reads the current version whoever owns it: the policy refuses (403) a change of
# another's resource, rather than the write mistaking it for a free id.
_CURRENT = select(*OWNED_COLUMNS).where(
    and_(_RES.c.res_type == bindparam("res_type"), _RES.c.res_id == bindparam("res_id"))
)
_CURRENT_FOR_UPDATE = _CURRENT.with_for_update()
_UPDATE = (
    update(_RES)
    .where(and_(_RES.c.pk == bindparam("b_pk"), _RES.c.version == bindparam("b_previous")))
    .values(
        version=bindparam("b_version"),
        last_updated=bindparam("b_last_updated"),
        deleted=bindparam("b_deleted"),
        content=bindparam("b_content"),
        owner=bindparam("b_owner"),
        labels=bindparam("b_labels"),
        party=bindparam("b_party"),
    )
)


@cache
def _insert_returning(dialect_insert: Any) -> Any:
    """INSERT of new resources that returns their pks; a conflicting one returns no row."""
    return (
        dialect_insert(_RES)
        .on_conflict_do_nothing(index_elements=["res_type", "res_id"])
        .returning(_RES.c.pk, _RES.c.res_type, _RES.c.res_id)
    )


# Methods whose creates carry an id the server made up (see SqlWriteSession).
_PREFETCH_CHUNK = 500  # ids per statement of ``prefetch``
_EXISTS_CHUNK = 1000  # (type, id) pairs per statement of ``deleted_flags``
_SERVER_ASSIGNED_IDS = frozenset({"POST"})

# A resource not yet in ``resources`` is known by its type and id until ``flush`` gives it a pk.
Key = tuple[str, str]


def resource_values(stored: Stored) -> dict[str, Any]:
    return {
        "version": stored.version,
        "last_updated": stored.last_updated,
        "deleted": stored.deleted,
        "content": stored.content,
        "owner": stored.owner,
        "labels": stored.labels,
        "party": stored.party,
    }


class SqlWriteSession(SqlReadSession):
    """One write transaction.

    ``put`` buffers resource, history and index rows, and ``flush`` writes them with one
    statement per table (creates in one multi-row INSERT that returns their pks, updates in
    one UPDATE), so a transaction of N creates costs a handful of round trips instead of N.
    ``flush`` runs before any query of this session that could read the buffered rows
    (searches, ``scan``, ``current`` of a buffered resource) and before commit; an error in
    it aborts the whole transaction like any other.

    One exception: the row of a create whose id the client chose (``method`` other than
    POST) is written at once, with the buffered ones before it, because a concurrent create
    of that id must raise ``Conflict`` from ``put`` itself: update-as-create catches it and
    updates the other request's version instead. A server-assigned id (a fresh UUID) cannot
    meet that race, so its conflict check can wait for the flush; nor can an id that
    ``prefetch`` found free where writers are serialized (SQLite: ``concurrent_creates``
    False): no other transaction can create it meanwhile.
    """

    lock_rows = False  # SELECT ... FOR UPDATE where the engine has it
    concurrent_creates = True  # another transaction may create the same id meanwhile
    insert: Any = None  # the dialect's INSERT construct (ON CONFLICT DO NOTHING)

    def __init__(
        self,
        conn: AsyncConnection,
        caller: Caller = SYSTEM,
        visibility: Visibility = _everything,
        scope: ReadScope = EVERYTHING,
    ) -> None:
        super().__init__(conn, caller, visibility, scope)
        self._creates: dict[Key, Stored] = {}  # in put order: pks follow it
        self._updates: dict[int, tuple[Stored, int]] = {}  # pk -> (new, expected current version)
        self._pending: set[Key] = set()  # resources whose row in ``resources`` is not written
        self._pks: dict[Key, int] = {}  # created rows whose history/index rows are buffered
        self._history: list[tuple[int | Key, Stored]] = []
        self._index: dict[int | Key, tuple[str, IndexRows]] = {}
        self._clear: set[int] = set()
        self._touched: set[str] = set()  # change keys of the old and new versions written
        self._known: dict[Key, Stored | None] = {}  # prefetched current versions, not written
        self._after_commit: list[Callable[[], None]] = []
        self._later: dict[Table, list[dict[str, Any]]] = {}  # other parts' rows (insert_later)

    async def fetch(
        self, statement: Executable, params: Mapping[str, Any] | None = None
    ) -> Sequence[Row[Any]]:
        await self.flush()
        return await super().fetch(statement, params)

    async def current(self, res_type: str, res_id: str) -> Stored | None:
        if (res_type, res_id) in self._known:
            return self._known[(res_type, res_id)]
        if (res_type, res_id) in self._pending:
            await self.flush()  # read (and lock) the version this session wrote
        stmt = _CURRENT_FOR_UPDATE if self.lock_rows else _CURRENT
        row = (await self.conn.execute(stmt, {"res_type": res_type, "res_id": res_id})).first()
        return owned_from_row(row) if row else None

    async def prefetch(self, keys: Sequence[tuple[str, str]]) -> None:
        wanted: list[Key] = []
        for key in dict.fromkeys(keys):
            if key not in self._pending and key not in self._known:
                wanted.append(key)
                self._known[key] = None  # unless found below
        # One statement per chunk whatever the types (a feed's Practitioner, Role, Schedule
        # and Slots: one round trip, not one per type).
        for start in range(0, len(wanted), _PREFETCH_CHUNK):
            for row in await self._current_rows(wanted[start : start + _PREFETCH_CHUNK]):
                stored = owned_from_row(row)
                self._known[(stored.res_type, stored.res_id)] = stored

    async def _current_rows(self, keys: list[Key]) -> Sequence[Any]:
        """The current rows (``OWNED_COLUMNS``) of these keys, whoever owns them (as
        ``current`` reads), locked where the engine can."""
        by_type: dict[str, list[str]] = {}
        for res_type, res_id in keys:
            by_type.setdefault(res_type, []).append(res_id)
        stmt = select(*OWNED_COLUMNS).where(
            or_(*(and_(_RES.c.res_type == t, _RES.c.res_id.in_(i)) for t, i in by_type.items()))
        )
        if self.lock_rows:
            stmt = stmt.with_for_update()
        return (await self.conn.execute(stmt)).fetchall()

    async def deleted_flags(self, keys: Collection[Key]) -> dict[Key, bool]:
        # Pairs per statement: far below PostgreSQL's 32,767 bind parameters.
        ordered = sorted(keys)
        out: dict[Key, bool] = {}
        for start in range(0, len(ordered), _EXISTS_CHUNK):
            by_type: dict[str, list[str]] = {}
            for res_type, res_id in ordered[start : start + _EXISTS_CHUNK]:
                by_type.setdefault(res_type, []).append(res_id)
            stmt = select(_RES.c.res_type, _RES.c.res_id, _RES.c.deleted).where(
                or_(*(and_(_RES.c.res_type == t, _RES.c.res_id.in_(i)) for t, i in by_type.items()))
            )
            for row in await self.fetch(stmt):  # after this session's buffered writes
                out[(row.res_type, row.res_id)] = bool(row.deleted)
        return out

    async def lock_conditional(self, res_type: str) -> None:
        return None

    async def put(self, stored: Stored, index: IndexRows, previous: Stored | None) -> None:
        key = (stored.res_type, stored.res_id)
        found_free = key in self._known and self._known[key] is None
        self._known.pop(key, None)  # written now: ``current`` reads it again
        free = found_free and not self.concurrent_creates
        ref: int | Key
        if previous is None:
            if key in self._creates:
                await self.flush()  # the second create then conflicts, as if written at once
            self._creates[key] = stored
            self._pending.add(key)
            if stored.method not in _SERVER_ASSIGNED_IDS and not free:
                await self._flush_resources()  # Conflict here: nothing of it stays buffered
            ref = key
        else:
            assert previous.pk is not None
            if previous.pk in self._updates:
                await self.flush()  # check ``previous`` against the version written first
            self._updates[previous.pk] = (stored, previous.version)
            self._clear.add(previous.pk)
            ref = previous.pk
            self._pending.add(key)
        self._history.append((ref, stored))
        self._index[ref] = (stored.res_type, index)  # a later version in this session wins

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        await self.flush()  # what came before is not the savepoint's to undo
        touched = set(self._touched)
        try:
            async with self.conn.begin_nested():
                yield
                await self.flush()
        except BaseException:
            # The database undid the savepoint's rows and released its locks: forget what
            # the session buffered or read inside it.
            self._creates.clear()
            self._updates.clear()
            self._pending.clear()
            self._pks.clear()
            self._history.clear()
            self._index.clear()
            self._clear.clear()
            self._known.clear()
            self._later.clear()
            self._touched = touched
            raise

    async def execute(
        self,
        statement: Executable,
        params: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    ) -> int:
        result = await self.conn.execute(statement, params)
        return int(getattr(result, "rowcount", 0) or 0)

    def insert_later(self, table: Table, row: Mapping[str, Any]) -> None:
        self._later.setdefault(table, []).append(dict(row))

    def after_commit(self, callback: Callable[[], None]) -> None:
        self._after_commit.append(callback)

    def committed(self) -> None:
        """The transaction committed: run the ``after_commit`` callbacks (once)."""
        callbacks, self._after_commit = self._after_commit, []
        for callback in callbacks:
            callback()

    async def scan(self, res_type: str | None, after_pk: int, limit: int) -> list[Stored]:
        await self.flush()
        stmt = (
            select(*STORED_COLUMNS)
            .where(and_(_RES.c.pk > after_pk, _RES.c.deleted.is_(False)))
            .order_by(_RES.c.pk)
            .limit(limit)
        )
        if res_type is not None:
            stmt = stmt.where(_RES.c.res_type == res_type)
        only = self.visible(_RES)
        if only is not None:
            stmt = stmt.where(only)
        if self.lock_rows:
            stmt = stmt.with_for_update()
        return [stored_from_row(row) for row in (await self.conn.execute(stmt)).fetchall()]

    async def replace_index(self, pk: int, res_type: str, index: IndexRows) -> None:
        # Same buffers as ``put``: one DELETE per index table and one multi-row INSERT per
        # kind for the whole batch, at the next flush.
        self._clear.add(pk)
        self._index[pk] = (res_type, index)

    async def claim_key(
        self, client_id: str, key: str, request_hash: str, now: datetime, expired: datetime
    ) -> KeyRecord | None:
        mine = and_(_KEYS.c.client_id == client_id, _KEYS.c.key == key)
        await self.conn.execute(delete(_KEYS).where(mine, _KEYS.c.created < expired))
        values = {"client_id": client_id, "key": key, "request_hash": request_hash}
        claim = (
            self.insert(_KEYS)
            .values(**values, status=0, created=now)
            .on_conflict_do_nothing(index_elements=[_KEYS.c.client_id, _KEYS.c.key])
            .returning(_KEYS.c.key)
        )
        if (await self.conn.execute(claim)).first() is not None:
            return None
        row = (await self.conn.execute(select(_KEYS).where(mine))).one()
        return KeyRecord(
            row.request_hash, row.status, row.res_type, row.res_id, row.version, row.created
        )

    async def record_key(self, client_id: str, key: str, status: int, stored: Stored) -> None:
        mine = and_(_KEYS.c.client_id == client_id, _KEYS.c.key == key)
        await self.conn.execute(
            update(_KEYS)
            .where(mine)
            .values(
                status=status,
                res_type=stored.res_type,
                res_id=stored.res_id,
                version=stored.version,
            )
        )

    async def flush(self) -> None:
        await self._flush_resources()
        pks, self._pks = self._pks, {}
        if self._clear:
            cleared = sorted(self._clear)
            self._clear.clear()
            self._touched.update(await self._clear_index(cleared))
        batches: list[tuple[Table, list[dict[str, Any]]]] = []
        if self._history:
            history, self._history = self._history, []
            batches.append(
                (
                    _HIST,
                    [
                        {
                            "res_pk": ref if isinstance(ref, int) else pks[ref],
                            "res_type": s.res_type,
                            "res_id": s.res_id,
                            "method": s.method,
                            **resource_values(s),
                        }
                        for ref, s in history
                    ],
                )
            )
        if self._index:
            by_kind: dict[str, list[dict[str, Any]]] = {}
            for ref, (res_type, index) in self._index.items():
                pk = ref if isinstance(ref, int) else pks[ref]
                self._touched.update(r["key"] for r in index.get(schema.WATCH_KIND, ()))
                for kind, kind_rows in index.items():
                    by_kind.setdefault(kind, []).extend(
                        {**r, "res_pk": pk, "res_type": res_type} for r in kind_rows
                    )
            self._index.clear()
            batches += [(schema.INDEX_TABLES[k], rows) for k, rows in by_kind.items() if rows]
        if self._later:
            later, self._later = self._later, {}
            batches += list(later.items())
        if batches:
            await self._insert_batches(batches)

    def _pks_in(self, column: Any, pks: list[int]) -> ColumnElement[bool]:
        return any_in(self.dialect, column, "pks", BigInteger, pks)

    async def finish(self) -> None:
        """Before commit: write what is buffered, then count one change of every key the
        transaction touched. The counters are updated last and in key order, so two
        transactions never wait for each other's counters in opposite orders."""
        await self.flush()
        if not self._touched:
            return
        keys, self._touched = sorted(self._touched), set()
        stmt = self.insert(_VERSIONS).values([{"key": k, "version": 1} for k in keys])
        bump = stmt.on_conflict_do_update(
            index_elements=[_VERSIONS.c.key], set_={"version": _VERSIONS.c.version + 1}
        )
        await self.conn.execute(bump)

    async def _flush_resources(self) -> None:
        """Write the buffered resource rows; the created ones' pks go to ``_pks``."""
        if self._creates:
            creates, self._creates = self._creates, {}
            inserted = await self._insert_resources(list(creates.values()))
            self._pks.update(inserted)
            self._pending.difference_update(creates)
            for key in creates:
                if key not in inserted:
                    # ON CONFLICT DO NOTHING: a concurrent create of the same id returns no
                    # row (PostgreSQL waits for the other transaction first) instead of
                    # aborting the statement, so update-as-create can go on in this session.
                    raise errors.conflict(f"{key[0]}/{key[1]} was created concurrently; retry")
        if self._updates:
            updates, self._updates = self._updates, {}
            self._pending.clear()
            if await self._update_resources(updates) != len(updates):
                raise errors.conflict(f"{await self._stale(updates)} changed concurrently; retry")

    async def _stale(self, updates: dict[int, tuple[Stored, int]]) -> str:
        """Which update found another version than expected (only on the error path)."""
        stmt = select(_RES.c.pk, _RES.c.version).where(_RES.c.pk.in_(list(updates)))
        written = {
            pk for pk, v in (await self.conn.execute(stmt)).all() if v == updates[pk][0].version
        }
        stale = next(s for pk, (s, _) in updates.items() if pk not in written)
        return f"{stale.res_type}/{stale.res_id}"

    # -- statements an adapter may replace with faster ones for its engine ------------------

    async def _insert_resources(self, creates: list[Stored]) -> dict[Key, int]:
        """INSERT ... ON CONFLICT DO NOTHING of new resources, pks assigned in list order;
        returns the pks of the rows inserted (a conflicting one is missing)."""
        stmt = _insert_returning(self.insert)
        rows = [{"res_type": s.res_type, "res_id": s.res_id, **resource_values(s)} for s in creates]
        # Several rows: one multi-row VALUES per page of rows (SQLAlchemy's
        # "insertmanyvalues"); one row (a single create) skips that machinery.
        result = await self.conn.execute(stmt, rows if len(rows) > 1 else rows[0])
        return {(t, i): pk for pk, t, i in result.all()}

    async def _update_resources(self, updates: dict[int, tuple[Stored, int]]) -> int:
        """UPDATE of the resources' rows where they still have the expected version; returns
        how many rows changed."""
        params = [
            {
                "b_pk": pk,
                "b_previous": expected,
                **{f"b_{k}": v for k, v in resource_values(s).items()},
            }
            for pk, (s, expected) in updates.items()
        ]
        result = await self.conn.execute(_UPDATE, params if len(params) > 1 else params[0])
        return int(result.rowcount)

    async def _clear_index(self, pks: list[int]) -> set[str]:
        """Delete the index rows of these resources; returns the change keys they named."""
        old_keys = select(_WATCH.c.key).where(self._pks_in(_WATCH.c.res_pk, pks)).distinct()
        keys = {k for (k,) in (await self.conn.execute(old_keys)).all()}
        for table in schema.INDEX_TABLES.values():
            await self.conn.execute(delete(table).where(self._pks_in(table.c.res_pk, pks)))
        return keys

    async def _insert_batches(self, batches: list[tuple[Table, list[dict[str, Any]]]]) -> None:
        """Insert the rows of several tables (history, index), one table after another."""
        for table, rows in batches:
            await self._insert_rows(table, rows)

    async def _insert_rows(self, table: Table, rows: list[dict[str, Any]]) -> None:
        await self.conn.execute(insert(table), rows)


_READ = select(*STORED_COLUMNS).where(
    and_(_RES.c.res_type == bindparam("res_type"), _RES.c.res_id == bindparam("res_id"))
)
_VREAD = select(*HISTORY_COLUMNS).where(
    and_(
        _HIST.c.res_type == bindparam("res_type"),
        _HIST.c.res_id == bindparam("res_id"),
        _HIST.c.version == bindparam("version"),
    )
)


class SqlStore:
    """Shared implementation; the adapters set up engines and locking.

    Reads run on ``read_engine`` in autocommit (no BEGIN/ROLLBACK round trips); writes on
    ``write_engine`` in one transaction each. Every select of resources for a caller goes
    through ``visible`` (see ``port``). A transient failure of the database (no free
    connection within ``pool_timeout``, a statement over its time limit, a lock) leaves
    every method and session as a ``Busy`` error (503, ``Retry-After``): see ``transient``.
    """

    dialect = "sql"
    read_session_class: type[SqlReadSession] = SqlReadSession
    write_session_class: type[SqlWriteSession] = SqlWriteSession

    def __init__(
        self,
        engine: AsyncEngine,
        read_engine: AsyncEngine | None = None,
        *,
        pool_timeout: float = 30.0,
        statement_timeout_ms: int = 0,
        policy: Policy | None = None,
    ) -> None:
        # The access policy (``app.make_policy``; the context reads the same object)
        self.policy = policy or Policy()
        self.engine = engine
        self.read_engine = read_engine or engine
        self.pool_timeout = pool_timeout
        self.statement_timeout_ms = statement_timeout_ms

    def transient(self, exc: Exception) -> FhirError | None:
        """The 503 that a driver's exception stands for, or None (adapters add their
        engine's lock and time-limit errors). Diagnostics never quote the statement: its
        parameters may be patient data."""
        if isinstance(exc, sa_exc.TimeoutError):  # the pool's: every connection is in use
            return busy(
                f"the server is busy (no database connection free within"
                f" {self.pool_timeout:g} s); retry later"
            )
        return None

    def statement_timed_out(self) -> FhirError:
        return busy(
            f"a database statement ran past its limit ({self.statement_timeout_ms} ms) and was"
            " cancelled; nothing was changed; retry later",
            code="timeout",
        )

    @contextmanager
    def translating(self) -> Iterator[None]:
        """Turn the transient exceptions of the driver into ``Busy``."""
        try:
            yield
        except Exception as exc:
            error = self.transient(exc)
            if error is None:
                raise
            log.warning("database busy", issue=error.issues[0].code, error=type(exc).__name__)
            raise error from exc

    def scope(self, caller: Caller) -> ReadScope:
        """What the policy lets ``caller`` see (the server's own work: everything)."""
        return EVERYTHING if caller is SYSTEM else self.policy.read_scope(caller)

    def visible(self, caller: Caller, rows: FromClause) -> ColumnElement[bool] | None:
        """THE access seam: the where-clause that limits ``rows`` (``resources``,
        ``history`` or an alias of either: both have ``res_type``, ``owner`` and
        ``labels``) to what ``caller`` may see (``scope``, ``access.clause``), or None when
        it may see them all. Every select of resources made for a caller adds it: the
        store's own (``read``, ``vread``, ``history``, ``scan``) and, through
        ``session.visible``, search's. A write's ``current`` reads every row: the policy
        decides a change by the owner it returns. The fast paths of the adapters run when
        the scope shows the whole type read."""
        return access.clause(self.scope(caller), rows)

    def _fast(self, caller: Caller, res_type: str) -> bool | None:
        """For a point read: True when every row of ``res_type`` is visible (the fast path
        may run), False when none is, None when the SQL must decide row by row."""
        scope = self.scope(caller)
        if scope.whole_type(res_type):
            return True
        return False if not scope.type_ok(res_type) else None

    @asynccontextmanager
    async def reading(self, caller: Caller = SYSTEM) -> AsyncIterator[SqlReadSession]:
        with self.translating():
            async with self.read_engine.connect() as conn:
                yield self.read_session_class(conn, caller, self.visible, self.scope(caller))

    @asynccontextmanager
    async def writing(self, caller: Caller = SYSTEM) -> AsyncIterator[SqlWriteSession]:
        with self.translating():
            async with self._write_engine().begin() as conn:
                session = self.write_session_class(conn, caller, self.visible, self.scope(caller))
                yield session
                await session.finish()
            session.committed()

    def _write_engine(self) -> AsyncEngine:
        return self.engine

    async def read(self, res_type: str, res_id: str, caller: Caller = SYSTEM) -> Stored | None:
        stmt = _READ
        only = self.visible(caller, _RES)
        if only is not None:
            stmt = stmt.where(only)
        with self.translating():
            async with self.read_engine.connect() as conn:
                params = {"res_type": res_type, "res_id": res_id}
                row = (await conn.execute(stmt, params)).first()
        return stored_from_row(row) if row else None

    async def vread(
        self, res_type: str, res_id: str, version: int, caller: Caller = SYSTEM
    ) -> Stored | None:
        stmt = _VREAD
        only = self.visible(caller, _HIST)
        if only is not None:
            stmt = stmt.where(only)
        params = {"res_type": res_type, "res_id": res_id, "version": version}
        with self.translating():
            async with self.read_engine.connect() as conn:
                row = (await conn.execute(stmt, params)).first()
        return stored_from_row(row) if row else None

    async def history(
        self,
        *,
        res_type: str | None,
        res_id: str | None,
        since: datetime | None,
        at: datetime | None,
        count: int,
        offset: int,
        caller: Caller = SYSTEM,
    ) -> HistoryPage:
        conditions = []
        if res_type is not None:
            conditions.append(_HIST.c.res_type == res_type)
        if res_id is not None:
            conditions.append(_HIST.c.res_id == res_id)
        if since is not None:
            conditions.append(_HIST.c.last_updated >= since)
        if at is not None:
            conditions.append(_HIST.c.last_updated <= at)
        only = self.visible(caller, _HIST)
        if only is not None:
            conditions.append(only)
        where = and_(*conditions) if conditions else None
        page = select(*HISTORY_COLUMNS).order_by(
            _HIST.c.last_updated.desc(), _HIST.c.version.desc()
        )
        total = select(func.count()).select_from(_HIST)
        if where is not None:
            page = page.where(where)
            total = total.where(where)
        with self.translating():
            async with self.read_engine.connect() as conn:
                rows = (await conn.execute(page.limit(count).offset(offset))).fetchall()
                count_all = int((await conn.execute(total)).scalar_one())
        return HistoryPage([stored_from_row(r) for r in rows], count_all)

    async def schema_state(self) -> SchemaState:
        async with self.read_engine.connect() as conn:
            return await conn.run_sync(schema_state)

    async def migrate(self) -> None:
        async with self._write_engine().begin() as conn:
            await conn.run_sync(upgrade)

    async def optimize(self) -> None:
        """Nothing by default (PostgreSQL's autovacuum keeps the planner's statistics)."""

    async def close(self) -> None:
        await self.engine.dispose()
