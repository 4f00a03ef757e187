"""What the SQLite and PostgreSQL adapters share: SQLAlchemy Core over ``schema``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, insert, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import Executable

from fhir_server.core import errors
from fhir_server.storage import schema
from fhir_server.storage.migrate import upgrade
from fhir_server.storage.port import HistoryPage, IndexRows, Stored

_RES = schema.resources
_HIST = schema.history


def _aware(value: datetime) -> datetime:
    # SQLite returns naive datetimes; everything we store is UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _stored(row: Any, method: str = "") -> Stored:  # a Row of resources or history
    m = row._mapping
    return Stored(
        res_type=m["res_type"],
        res_id=m["res_id"],
        version=m["version"],
        last_updated=_aware(m["last_updated"]),
        deleted=bool(m["deleted"]),
        content=bytes(m["content"]),
        method=m.get("method", method),
        pk=m["pk"] if "pk" in m else m["res_pk"],
    )


class SqlReadSession:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def fetch(self, statement: Executable) -> Sequence[Row[Any]]:
        result = await self.conn.execute(statement)
        return result.fetchall()


_CURRENT = select(_RES).where(
    and_(_RES.c.res_type == bindparam("res_type"), _RES.c.res_id == bindparam("res_id"))
)
_CURRENT_FOR_UPDATE = _CURRENT.with_for_update()


class SqlWriteSession(SqlReadSession):
    """One write transaction.

    The resource row is written at once (its surrogate key is needed), while history and
    index rows are buffered and written in one multi-row statement per table by ``flush``:
    before any query of this session (so searches inside a transaction see its writes) and
    before commit.
    """

    lock_rows = False  # SELECT ... FOR UPDATE where the engine has it
    insert: Any = None  # the dialect's INSERT construct (ON CONFLICT DO NOTHING)

    def __init__(self, conn: AsyncConnection) -> None:
        super().__init__(conn)
        self._history: list[dict[str, Any]] = []
        self._index: dict[int, tuple[str, IndexRows]] = {}
        self._clear: set[int] = set()

    async def fetch(self, statement: Executable) -> Sequence[Row[Any]]:
        await self.flush()
        return await super().fetch(statement)

    async def current(self, res_type: str, res_id: str) -> Stored | None:
        stmt = _CURRENT_FOR_UPDATE if self.lock_rows else _CURRENT
        row = (await self.conn.execute(stmt, {"res_type": res_type, "res_id": res_id})).first()
        return _stored(row) if row else None

    async def lock_conditional(self, res_type: str) -> None:
        return None

    async def put(self, stored: Stored, index: IndexRows, previous: Stored | None) -> None:
        values = {
            "version": stored.version,
            "last_updated": stored.last_updated,
            "deleted": stored.deleted,
            "content": stored.content,
        }
        if previous is None:
            # ON CONFLICT DO NOTHING: a concurrent create of the same id returns no row
            # (PostgreSQL waits for the other transaction first) instead of aborting ours.
            stmt = (
                self.insert(_RES)
                .values(res_type=stored.res_type, res_id=stored.res_id, **values)
                .on_conflict_do_nothing(index_elements=["res_type", "res_id"])
                .returning(_RES.c.pk)
            )
            pk = (await self.conn.execute(stmt)).scalar()
            if pk is None:
                raise errors.conflict(
                    f"{stored.res_type}/{stored.res_id} was created concurrently; retry"
                )
        else:
            assert previous.pk is not None
            pk = previous.pk
            result = await self.conn.execute(
                update(_RES)
                .where(and_(_RES.c.pk == pk, _RES.c.version == previous.version))
                .values(**values)
            )
            if result.rowcount != 1:
                raise errors.conflict(
                    f"{stored.res_type}/{stored.res_id} changed concurrently; retry",
                )
            self._clear.add(pk)
        self._history.append(
            {
                "res_pk": pk,
                "res_type": stored.res_type,
                "res_id": stored.res_id,
                "method": stored.method,
                **values,
            }
        )
        self._index[pk] = (stored.res_type, index)  # a later version in this session wins

    async def scan(self, res_type: str | None, after_pk: int, limit: int) -> list[Stored]:
        await self.flush()
        stmt = (
            select(_RES)
            .where(and_(_RES.c.pk > after_pk, _RES.c.deleted.is_(False)))
            .order_by(_RES.c.pk)
            .limit(limit)
        )
        if res_type is not None:
            stmt = stmt.where(_RES.c.res_type == res_type)
        if self.lock_rows:
            stmt = stmt.with_for_update()
        return [_stored(row) for row in (await self.conn.execute(stmt)).fetchall()]

    async def replace_index(self, pk: int, res_type: str, index: IndexRows) -> None:
        # Same buffers as ``put``: one DELETE per index table and one multi-row INSERT per
        # kind for the whole batch, at the next flush.
        self._clear.add(pk)
        self._index[pk] = (res_type, index)

    async def flush(self) -> None:
        if self._clear:
            pks = sorted(self._clear)
            self._clear.clear()
            for table in schema.INDEX_TABLES.values():
                await self.conn.execute(delete(table).where(table.c.res_pk.in_(pks)))
        if self._history:
            rows, self._history = self._history, []
            await self.conn.execute(insert(_HIST), rows)
        if self._index:
            by_kind: dict[str, list[dict[str, Any]]] = {}
            for pk, (res_type, index) in self._index.items():
                for kind, kind_rows in index.items():
                    by_kind.setdefault(kind, []).extend(
                        {**r, "res_pk": pk, "res_type": res_type} for r in kind_rows
                    )
            self._index.clear()
            for kind, kind_rows in by_kind.items():
                await self.conn.execute(insert(schema.INDEX_TABLES[kind]), kind_rows)


_READ = select(
    _RES.c.res_type,
    _RES.c.res_id,
    _RES.c.version,
    _RES.c.last_updated,
    _RES.c.deleted,
    _RES.c.content,
    _RES.c.pk,
).where(and_(_RES.c.res_type == bindparam("res_type"), _RES.c.res_id == bindparam("res_id")))
_VREAD = select(_HIST).where(
    and_(
        _HIST.c.res_type == bindparam("res_type"),
        _HIST.c.res_id == bindparam("res_id"),
        _HIST.c.version == bindparam("version"),
    )
)


class SqlStore:
    """Shared implementation; the adapters set up engines and locking.

    Reads run on ``read_engine`` in autocommit (no BEGIN/ROLLBACK round trips); writes on
    ``write_engine`` in one transaction each.
    """

    dialect = "sql"
    write_session_class: type[SqlWriteSession] = SqlWriteSession

    def __init__(self, engine: AsyncEngine, read_engine: AsyncEngine | None = None) -> None:
        self.engine = engine
        self.read_engine = read_engine or engine

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[SqlReadSession]:
        async with self.read_engine.connect() as conn:
            yield SqlReadSession(conn)

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[SqlWriteSession]:
        async with self._write_engine().begin() as conn:
            session = self.write_session_class(conn)
            yield session
            await session.flush()

    def _write_engine(self) -> AsyncEngine:
        return self.engine

    async def read(self, res_type: str, res_id: str) -> Stored | None:
        async with self.read_engine.connect() as conn:
            row = (await conn.execute(_READ, {"res_type": res_type, "res_id": res_id})).first()
        return _stored(row) if row else None

    async def vread(self, res_type: str, res_id: str, version: int) -> Stored | None:
        params = {"res_type": res_type, "res_id": res_id, "version": version}
        async with self.read_engine.connect() as conn:
            row = (await conn.execute(_VREAD, params)).first()
        return _stored(row) if row else None

    async def history(
        self,
        *,
        res_type: str | None,
        res_id: str | None,
        since: datetime | None,
        at: datetime | None,
        count: int,
        offset: int,
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
        where = and_(*conditions) if conditions else None
        page = select(_HIST).order_by(_HIST.c.last_updated.desc(), _HIST.c.version.desc())
        total = select(func.count()).select_from(_HIST)
        if where is not None:
            page = page.where(where)
            total = total.where(where)
        async with self.read_engine.connect() as conn:
            rows = (await conn.execute(page.limit(count).offset(offset))).fetchall()
            count_all = int((await conn.execute(total)).scalar_one())
        return HistoryPage([_stored(r) for r in rows], count_all)

    async def migrate(self) -> None:
        async with self._write_engine().begin() as conn:
            await conn.run_sync(upgrade)

    async def close(self) -> None:
        await self.engine.dispose()
