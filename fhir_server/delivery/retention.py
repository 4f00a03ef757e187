"""The purge (docs/delivery.md): what the server keeps only for a while.

- sent messages of the outbox, ``FHIR_DELIVERY_KEEP_HOURS`` after they were sent;
- failed messages, ``FHIR_DELIVERY_KEEP_FAILED_HOURS`` after they were created (longer:
  ``$delivery-status`` reports them);
- other tables' expired rows, each a ``Target`` (the expired ``Idempotency-Key`` records:
  ``interactions/idempotency.py``).

Pending and sending messages are never purged. Rows go in batches of ``batch``, each its
own short transaction (writers are not held up), at most ``max_batches`` per target and
run. One process at a time: on PostgreSQL each batch takes a transaction-level advisory
lock and a process that does not get it stops (another is purging); SQLite serialises its
writers. Run by a sender's housekeeping (``loop.SenderLoop``) every few minutes and by
``fhir-server purge [--dry-run]``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog
from sqlalchemy import ColumnElement, Table, delete, func, select, tuple_

from fhir_server.delivery.queue import FAILED, SENT
from fhir_server.storage.port import Store, WriteSession
from fhir_server.storage.schema import deliveries

log = structlog.get_logger("fhir_server.delivery")
LOCK_KEY = 0x46484952_50524745 & 0x7FFF_FFFF_FFFF_FFFF  # "FHIRPRGE": the purge's own lock
BATCH = 1000
MAX_BATCHES = 100

_D = deliveries.c


@dataclass(frozen=True, slots=True)
class Target:
    """Rows of ``table`` to purge: those matching ``expired(now)``, named ``name``."""

    name: str
    table: Table
    expired: ColumnElement[bool]


@dataclass
class Purged:
    counts: dict[str, int] = field(default_factory=dict)
    busy: bool = False  # another process was purging: this run stopped
    complete: bool = True  # False: ``max_batches`` reached, rows are left for the next run

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def delivery_targets(sent_hours: float, failed_hours: float, now: datetime) -> list[Target]:
    """The outbox's purgeable rows (never a pending or sending one)."""
    return [
        Target(
            "sent messages",
            deliveries,
            (_D.state == SENT) & (_D.sent < now - timedelta(hours=sent_hours)),
        ),
        Target(
            "failed messages",
            deliveries,
            (_D.state == FAILED) & (_D.created < now - timedelta(hours=failed_hours)),
        ),
    ]


def _keys(table: Table) -> tuple[ColumnElement[object], ...]:
    return tuple(table.primary_key.columns)


async def _locked(session: WriteSession) -> bool:
    if session.dialect != "postgresql":
        return True  # SQLite: one writer at a time already
    rows = await session.fetch(select(func.pg_try_advisory_xact_lock(LOCK_KEY)))
    return bool(rows[0][0])


async def count(store: Store, targets: list[Target]) -> Purged:
    """What a purge would delete now (``--dry-run``)."""
    out = Purged()
    async with store.reading() as session:
        for t in targets:
            rows = await session.fetch(select(func.count()).select_from(t.table).where(t.expired))
            out.counts[t.name] = int(rows[0][0])
    return out


async def purge(
    store: Store,
    targets: list[Target],
    batch: int = BATCH,
    max_batches: int = MAX_BATCHES,
    progress: Callable[[str, int], None] | None = None,
) -> Purged:
    """Delete the targets' rows, in batches (see the module docstring); ``progress`` is
    told each batch's target and count."""
    out = Purged(counts={t.name: 0 for t in targets})
    for t in targets:
        keys = _keys(t.table)
        key = tuple_(*keys) if len(keys) > 1 else keys[0]
        chosen = select(*keys).where(t.expired).limit(batch)
        for _ in range(max_batches):
            async with store.writing() as session:
                if not await _locked(session):
                    out.busy = True
                    log.info("purge skipped: another process is purging")
                    return out
                if session.dialect == "postgresql":
                    # rows a concurrent statement holds are left for the next run
                    chosen_now = chosen.with_for_update(skip_locked=True)
                else:
                    chosen_now = chosen
                removed = await session.execute(delete(t.table).where(key.in_(chosen_now)))
            out.counts[t.name] += removed
            if progress is not None:
                progress(t.name, removed)
            if removed < batch:
                break
        else:
            out.complete = False
    if out.total:
        log.info("purged", **{k.replace(" ", "_"): v for k, v in out.counts.items()})
    return out
