"""What the SQLite and PostgreSQL adapters share: SQLAlchemy Core over ``schema``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
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


def _stored(row: Row[Any], method: str = "") -> Stored:
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


class SqlWriteSession(SqlReadSession):
    lock_rows = False  # SELECT ... FOR UPDATE where the engine has it

    async def current(self, res_type: str, res_id: str) -> Stored | None:
        stmt = select(_RES).where(and_(_RES.c.res_type == res_type, _RES.c.res_id == res_id))
        if self.lock_rows:
            stmt = stmt.with_for_update()
        row = (await self.conn.execute(stmt)).first()
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
            try:
                async with self.conn.begin_nested():
                    result = await self.conn.execute(
                        insert(_RES).values(
                            res_type=stored.res_type, res_id=stored.res_id, **values
                        )
                    )
            except IntegrityError as exc:
                raise errors.conflict(
                    f"{stored.res_type}/{stored.res_id} was created concurrently; retry"
                ) from exc
            pk = int(result.inserted_primary_key[0])  # type: ignore[index]
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
        await self.conn.execute(
            insert(_HIST).values(
                res_pk=pk,
                res_type=stored.res_type,
                res_id=stored.res_id,
                method=stored.method,
                **values,
            )
        )
        if previous is not None:
            for table in schema.INDEX_TABLES.values():
                await self.conn.execute(delete(table).where(table.c.res_pk == pk))
        for kind, rows in index.items():
            if rows:
                table = schema.INDEX_TABLES[kind]
                await self.conn.execute(
                    insert(table), [{**r, "res_pk": pk, "res_type": stored.res_type} for r in rows]
                )


class SqlStore:
    """Shared implementation; the adapters set up engines and locking."""

    dialect = "sql"
    write_session_class: type[SqlWriteSession] = SqlWriteSession

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[SqlReadSession]:
        async with self.engine.connect() as conn:
            yield SqlReadSession(conn)

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[SqlWriteSession]:
        async with self._write_engine().begin() as conn:
            yield self.write_session_class(conn)

    def _write_engine(self) -> AsyncEngine:
        return self.engine

    async def read(self, res_type: str, res_id: str) -> Stored | None:
        stmt = select(_RES).where(and_(_RES.c.res_type == res_type, _RES.c.res_id == res_id))
        async with self.engine.connect() as conn:
            row = (await conn.execute(stmt)).first()
        return _stored(row) if row else None

    async def read_many(self, res_type: str, res_ids: list[str]) -> list[Stored]:
        if not res_ids:
            return []
        stmt = select(_RES).where(
            and_(_RES.c.res_type == res_type, _RES.c.res_id.in_(res_ids), _RES.c.deleted.is_(False))
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(stmt)).fetchall()
        by_id = {r._mapping["res_id"]: _stored(r) for r in rows}
        return [by_id[i] for i in res_ids if i in by_id]

    async def vread(self, res_type: str, res_id: str, version: int) -> Stored | None:
        stmt = select(_HIST).where(
            and_(
                _HIST.c.res_type == res_type,
                _HIST.c.res_id == res_id,
                _HIST.c.version == version,
            )
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(stmt)).first()
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
        async with self.engine.connect() as conn:
            rows = (await conn.execute(page.limit(count).offset(offset))).fetchall()
            count_all = int((await conn.execute(total)).scalar_one())
        return HistoryPage([_stored(r) for r in rows], count_all)

    async def migrate(self) -> None:
        async with self._write_engine().begin() as conn:
            await conn.run_sync(upgrade)

    async def close(self) -> None:
        await self.engine.dispose()
