"""Each source's polling state in the database (table ``pull_sources``, migration 0006),
shared by every process of the server: what to send in the next conditional GET, when the
source is next due, how it went, and who holds it now.

A source is polled by one process at a time: a process *claims* a due source by writing
its lease (owner + expiry) in the row. On PostgreSQL the due rows are selected ``FOR
UPDATE SKIP LOCKED`` (two processes claiming at once never wait on each other, nor take the
same row); on SQLite one conditional ``UPDATE`` per row does the same (writers are
serialised). An expired lease (its process died) is claimed like a free row. The outcome
of a poll (``succeeded``/``failed``) is written only by the lease's holder, in one
statement that also frees the lease.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Column, Integer, MetaData, String, Table, Text, and_, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from fhir_server.storage.types import UtcDateTime

metadata = MetaData()
UTC_TIME = UtcDateTime()
ERROR_CHARS = 1000  # a last error is a line for people, not a dump

pull_sources = Table(
    "pull_sources",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("etag", Text),
    Column("last_modified", Text),
    Column("next_due", UTC_TIME, nullable=False),
    Column("failures", Integer, nullable=False, default=0),
    Column("last_success", UTC_TIME),
    Column("last_error", Text),
    Column("last_error_at", UTC_TIME),
    Column("slot_count", Integer),
    Column("rejected", Integer),  # resources of the last snapshot refused (docs/ingest.md)
    Column("lease_owner", String(128)),
    Column("lease_expires", UTC_TIME),
)


@dataclass(frozen=True, slots=True)
class SourceState:
    name: str
    etag: str | None
    last_modified: str | None
    next_due: datetime
    failures: int
    last_success: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    slot_count: int | None
    rejected: int | None
    lease_owner: str | None
    lease_expires: datetime | None

    @classmethod
    def of(cls, row: Any) -> SourceState:
        return cls(**{c.name: row._mapping[c.name] for c in pull_sources.columns})


class PullStates:
    """The rows of ``pull_sources`` through one engine (the store's write engine)."""

    def __init__(self, engine: AsyncEngine, read_engine: AsyncEngine | None = None) -> None:
        self.engine = engine
        self.read_engine = read_engine or engine  # SQLite: reads take no write lock
        self.dialect = engine.dialect.name

    async def ensure(self, names: Sequence[str], now: datetime) -> None:
        """A row for each configured source (due now when new); others are left as they
        are (a source removed from the file keeps its history until it comes back)."""
        if not names:
            return
        insert = pg_insert if self.dialect == "postgresql" else sqlite_insert
        stmt = insert(pull_sources).values(
            [{"name": n, "next_due": now, "failures": 0} for n in names]
        )
        async with self.engine.begin() as conn:
            await conn.execute(stmt.on_conflict_do_nothing(index_elements=["name"]))

    async def all(self, names: Sequence[str] | None = None) -> dict[str, SourceState]:
        stmt = select(pull_sources).order_by(pull_sources.c.name)
        if names is not None:
            stmt = stmt.where(pull_sources.c.name.in_(list(names)))
        async with self.read_engine.connect() as conn:
            rows = (await conn.execute(stmt)).fetchall()
        return {row.name: SourceState.of(row) for row in rows}

    async def claim(
        self, leases: dict[str, float], owner: str, now: datetime, limit: int = 100
    ) -> list[SourceState]:
        """Lease the due sources among ``leases`` (name -> lease seconds) to ``owner``;
        the claimed rows (their etag, failures…, and the new lease), oldest due first."""
        if not leases:
            return []
        free = or_(pull_sources.c.lease_owner.is_(None), pull_sources.c.lease_expires <= now)
        due = and_(pull_sources.c.name.in_(list(leases)), pull_sources.c.next_due <= now, free)
        claimed: list[SourceState] = []
        async with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                stmt = (
                    select(pull_sources)
                    .where(due)
                    .order_by(pull_sources.c.next_due)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
                candidates = [SourceState.of(r) for r in (await conn.execute(stmt)).fetchall()]
            else:
                stmt = select(pull_sources).where(due).order_by(pull_sources.c.next_due)
                candidates = [
                    SourceState.of(r) for r in (await conn.execute(stmt.limit(limit))).fetchall()
                ]
            for state in candidates:
                expires = now + timedelta(seconds=leases[state.name])
                taken = await conn.execute(
                    update(pull_sources)
                    .where(pull_sources.c.name == state.name, due)
                    .values(lease_owner=owner, lease_expires=expires)
                )
                if taken.rowcount == 1:
                    claimed.append(replace(state, lease_owner=owner, lease_expires=expires))
        return claimed

    async def succeeded(
        self,
        name: str,
        owner: str,
        *,
        now: datetime,
        next_due: datetime,
        etag: str | None,
        last_modified: str | None,
        slot_count: int | None,
        rejected: int | None = None,
    ) -> bool:
        """Record a whole poll's success and free the lease; False when the lease was lost
        (it expired and another process took the source: its outcome counts, not ours)."""
        values: dict[str, Any] = {
            "etag": etag,
            "last_modified": last_modified,
            "next_due": next_due,
            "failures": 0,
            "last_success": now,
        }
        if slot_count is not None:  # a 304 keeps the last counts
            values["slot_count"] = slot_count
            values["rejected"] = rejected or 0
        return await self._release(name, owner, values)

    async def failed(
        self, name: str, owner: str, *, now: datetime, next_due: datetime, error: str
    ) -> bool:
        values = {
            "next_due": next_due,
            "failures": pull_sources.c.failures + 1,
            "last_error": error[:ERROR_CHARS],
            "last_error_at": now,
        }
        return await self._release(name, owner, values)

    async def _release(self, name: str, owner: str, values: dict[str, Any]) -> bool:
        stmt = (
            update(pull_sources)
            .where(pull_sources.c.name == name, pull_sources.c.lease_owner == owner)
            .values(**values, lease_owner=None, lease_expires=None)
        )
        async with self.engine.begin() as conn:
            return (await conn.execute(stmt)).rowcount == 1

    async def renew(self, name: str, owner: str, expires: datetime) -> bool:
        """Extend ``owner``'s lease; False when it no longer holds it."""
        stmt = (
            update(pull_sources)
            .where(pull_sources.c.name == name, pull_sources.c.lease_owner == owner)
            .values(lease_expires=expires)
        )
        async with self.engine.begin() as conn:
            return (await conn.execute(stmt)).rowcount == 1

    async def abandon(self, name: str, owner: str) -> None:
        """Free the lease without recording anything (the process stops mid-poll): the
        source stays due, another process fetches it again without waiting for the expiry."""
        await self._release(name, owner, {})

    async def postpone(self, name: str, next_due: datetime) -> None:
        """A disabled source: not due until it is enabled again (its row is kept)."""
        async with self.engine.begin() as conn:
            await conn.execute(
                update(pull_sources)
                .where(pull_sources.c.name == name, pull_sources.c.lease_owner.is_(None))
                .values(next_due=next_due)
            )

    async def wake(self, names: Sequence[str], now: datetime, beyond: datetime) -> None:
        """Sources enabled again: due now if they were pushed past ``beyond`` (disabled)."""
        if not names:
            return
        async with self.engine.begin() as conn:
            await conn.execute(
                update(pull_sources)
                .where(pull_sources.c.name.in_(list(names)), pull_sources.c.next_due > beyond)
                .values(next_due=now)
            )

    async def make_due(self, names: Sequence[str], now: datetime) -> None:
        """``pull --once``: due now, whatever their schedule (a held lease still holds)."""
        async with self.engine.begin() as conn:
            await conn.execute(
                update(pull_sources)
                .where(pull_sources.c.name.in_(list(names)))
                .values(next_due=now)
            )


def engine_of(store: object) -> AsyncEngine:
    """The store's write engine (both SQL adapters have one): the state rows are written
    beside the resources, outside their write sessions."""
    engine = getattr(store, "engine", None)
    if not isinstance(engine, AsyncEngine):
        raise TypeError(f"{type(store).__name__} has no SQL engine for the pull state")
    return engine


def states_of(store: object) -> PullStates:
    """The pull state of the store's database, written with its write engine and read with
    its read engine (both SQL adapters have them)."""
    read = getattr(store, "read_engine", None)
    return PullStates(engine_of(store), read if isinstance(read, AsyncEngine) else None)
