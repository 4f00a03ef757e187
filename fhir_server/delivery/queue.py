"""The persistent delivery queue (the outbox): table ``deliveries`` (``storage/schema.py``,
migration 0008), shared by every process of the server. docs/delivery.md.

A message is *enqueued* in the writer's own transaction, so it exists exactly when the
version it carries does; senders then *claim* messages (a lease), send them and mark them.

API (stable: the SAS sender and the subscriptions use it)

- ``enqueue(session, message)``: add a ``Message`` in a ``WriteSession`` (the write path's
  transaction): both commit or neither. Wake a local sender with
  ``session.after_commit(...)``, never before the commit.
- ``Queue(store, owner)`` (``owner``: this process's lease name, unique per process):
  - ``claim(limit, channel_prefix="", lease=30.0)``: lease up to ``limit`` due messages
    whose channel starts with ``channel_prefix``, oldest first. PostgreSQL selects them
    ``FOR UPDATE SKIP LOCKED`` (concurrent claimers never wait on, nor share, a row); SQLite
    serialises writers, so the select and a conditional ``UPDATE`` in one transaction do
    the same. A message is due when pending and its ``next_attempt`` has come, or when it
    is *sending* under an expired lease (its process died: it is sent again). **Order per
    key**: a message is never claimed while an earlier message (smaller ``id``) of the same
    channel and ordering key is pending or sending, so two versions of one appointment are
    never sent out of order, whatever the number of processes. A claim counts an attempt.
  - ``sent(d, status)``: delivered. ``retry(d, error, status)``: back to pending after an
    exponential backoff with jitter, capped (``Backoff``); retried without bound (the outbox
    never drops a message by itself; failing messages show in ``status``).
    ``failed(d, error, status)``: a permanent refusal (the receiver's 4xx other than
    408/429): never sent again, reported in ``status``. A *failed* message does not block
    later messages of its key (it will never be sent, so they cannot overtake it).
    ``release(d)``: give a claimed message back untried (shutdown). ``settle(outcomes)``:
    several of these in one transaction (a sender's round). Each returns False when the
    lease was lost (it expired and another process claimed the message: its outcome
    counts, not ours).
  - ``status(channel_prefix="")``: per channel, counts per state, messages being retried,
    the age of the oldest unsent one, the last error.
  - ``next_due(channel_prefix="")``: when the next message that waits comes due (a retry's
    ``next_attempt``, an expiring lease): a sender sleeps until then (``loop.py``).
- ``hurry(session, channel)``: the channel's pending messages due now, in the writer's
  transaction (a Subscription resumed by its client).
- ``Backoff(first, cap)``: the delay before attempt n+1, ``first * 2**(n-1)`` capped at
  ``cap``, drawn uniformly in its upper half (jitter: failed senders do not retry in step).

Delivery is at least once: a process killed after the receiver accepted a message and
before ``sent`` was recorded sends it again once its lease expires.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.sql import Executable

from fhir_server.core.fhirtime import utcnow
from fhir_server.storage.port import Store, WriteSession
from fhir_server.storage.schema import deliveries

PENDING, SENDING, SENT, FAILED = "pending", "sending", "sent", "failed"
STATES = (PENDING, SENDING, SENT, FAILED)
ERROR_CHARS = 1000  # a last error is a line for people, not a dump

_D = deliveries.c


@dataclass(frozen=True, slots=True)
class Message:
    """What to send: on ``channel``, in order among the messages of ``key``."""

    channel: str
    key: str
    body: bytes | None = None
    res_type: str | None = None
    res_id: str | None = None
    version: int | None = None
    headers: dict[str, str] | None = None
    not_before: datetime | None = None  # None: at once


@dataclass(frozen=True, slots=True)
class Delivery:
    """A claimed message (a row of ``deliveries``)."""

    id: int
    channel: str
    key: str
    res_type: str | None
    res_id: str | None
    version: int | None
    body: bytes | None
    headers: dict[str, str]
    state: str
    attempts: int
    next_attempt: datetime
    lease_owner: str | None
    lease_until: datetime | None
    last_status: int | None
    last_error: str | None
    created: datetime
    sent: datetime | None

    @classmethod
    def of(cls, row: Any) -> Delivery:
        values = {c.name: row._mapping[c.name] for c in deliveries.columns}
        values["headers"] = orjson.loads(values["headers"]) if values["headers"] else {}
        return cls(**values)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of a claimed message: ``SENT``, ``PENDING`` (retry after the backoff, or
    ``later``; ``untried``: given back, due at once, the attempt not counted) or
    ``FAILED``."""

    delivery: Delivery
    state: str
    status: int | None = None  # the receiver's HTTP status
    error: str | None = None
    untried: bool = False
    later: float | None = None  # PENDING: due again after this many seconds (not the backoff)


@dataclass(frozen=True, slots=True)
class ChannelStatus:
    channel: str
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATES, 0))
    retrying: int = 0  # pending messages that have failed at least once
    oldest_unsent: datetime | None = None  # created time of the oldest pending or sending
    last_error: str | None = None  # of the newest unsent or failed message that has one
    last_error_key: str | None = None

    def oldest_age(self, now: datetime) -> float | None:
        if self.oldest_unsent is None:
            return None
        return max(0.0, (now - self.oldest_unsent).total_seconds())


@dataclass(frozen=True, slots=True)
class Backoff:
    first: float = 1.0
    cap: float = 300.0

    def delay(self, attempts: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt (1, 2, ...)."""
        exponent = min(max(attempts, 1) - 1, 60)  # 2**60 s: past any cap, no overflow
        ceiling = min(self.cap, self.first * 2.0**exponent)
        return (rng or random).uniform(ceiling / 2, ceiling)


async def enqueue(session: WriteSession, message: Message) -> None:
    """Add ``message`` in the writer's transaction (see the module docstring)."""
    now = utcnow()
    # buffered with the version's own rows: no round trip of its own (storage/port.py)
    session.insert_later(
        deliveries,
        {
            "channel": message.channel,
            "key": message.key,
            "res_type": message.res_type,
            "res_id": message.res_id,
            "version": message.version,
            "body": message.body,
            "headers": orjson.dumps(message.headers).decode() if message.headers else None,
            "state": PENDING,
            "attempts": 0,
            "next_attempt": message.not_before or now,
            "lease_owner": None,
            "lease_until": None,
            "last_status": None,
            "last_error": None,
            "created": now,
            "sent": None,
        },
    )


async def hurry(session: WriteSession, channel: str) -> int:
    """Make the pending messages of ``channel`` due now, in the writer's transaction (a
    Subscription resumed by its client: its held messages leave at once); how many."""
    now = utcnow()
    return await session.execute(
        update(deliveries)
        .where(_D.channel == channel, _D.state == PENDING, _D.next_attempt > now)
        .values(next_attempt=now)
    )


def _due(now: datetime) -> Any:
    return or_(
        and_(_D.state == PENDING, _D.next_attempt <= now),
        and_(_D.state == SENDING, _D.lease_until <= now),
    )


def _unblocked() -> Any:
    earlier = deliveries.alias("earlier")
    return ~exists().where(
        earlier.c.channel == _D.channel,
        earlier.c.key == _D.key,
        earlier.c.id < _D.id,
        earlier.c.state.in_((PENDING, SENDING)),
    )


class Queue:
    """The ``deliveries`` rows through the store's write sessions (see the docstring)."""

    def __init__(self, store: Store, owner: str, backoff: Backoff | None = None) -> None:
        self.store = store
        self.owner = owner
        self.backoff = backoff or Backoff()

    async def claim(
        self, limit: int, channel_prefix: str = "", lease: float = 30.0
    ) -> list[Delivery]:
        if limit <= 0:
            return []
        now = utcnow()
        until = now + timedelta(seconds=lease)
        where = and_(_due(now), _unblocked())
        if channel_prefix:
            where = and_(where, _D.channel.startswith(channel_prefix, autoescape=True))
        async with self.store.writing() as session:
            stmt = select(deliveries).where(where).order_by(_D.id).limit(limit)
            if session.dialect == "postgresql":
                stmt = stmt.with_for_update(skip_locked=True, of=deliveries)
            rows = [Delivery.of(r) for r in await session.fetch(stmt)]
            if not rows:
                return []
            ids = [d.id for d in rows]
            # Rows are locked (PostgreSQL) or the writer is alone (SQLite): the re-check of
            # ``due`` only guards against a clock step between the two statements.
            await session.execute(
                update(deliveries)
                .where(_D.id.in_(ids), _due(now))
                .values(
                    state=SENDING,
                    lease_owner=self.owner,
                    lease_until=until,
                    attempts=_D.attempts + 1,
                )
            )
        return [
            replace(
                d, state=SENDING, lease_owner=self.owner, lease_until=until, attempts=d.attempts + 1
            )
            for d in rows
        ]

    async def sent(self, delivery: Delivery, status: int | None = None) -> bool:
        return (await self.settle([Outcome(delivery, SENT, status)]))[0]

    async def retry(self, delivery: Delivery, error: str, status: int | None = None) -> bool:
        return (await self.settle([Outcome(delivery, PENDING, status, error)]))[0]

    async def failed(self, delivery: Delivery, error: str, status: int | None = None) -> bool:
        return (await self.settle([Outcome(delivery, FAILED, status, error)]))[0]

    async def release(self, delivery: Delivery, later: float | None = None) -> bool:
        """Give the message back untried: due at once (or ``later`` seconds from now), the
        attempt not counted."""
        return (await self.settle([Outcome(delivery, PENDING, untried=True, later=later)]))[0]

    async def settle(
        self, outcomes: Sequence[Outcome], also: Sequence[Executable] = ()
    ) -> list[bool]:
        """Record several outcomes in one transaction (a sender's round: one commit, not
        one per message), with the statements ``also`` (a sender's own bookkeeping); per
        outcome, False when the lease was lost."""
        if not outcomes:
            return []
        now = utcnow()
        async with self.store.writing() as session:
            held = [await session.execute(self._statement(o, now)) == 1 for o in outcomes]
            for statement in also:
                await session.execute(statement)
            return held

    async def next_due(self, channel_prefix: str = "") -> datetime | None:
        """When the earliest message of these channels that waits for its time comes due:
        a pending one not held behind an earlier message of its key (that one's end wakes
        its sender), or a lease that expires (its process died); None: nothing waits."""
        pending = select(func.min(_D.next_attempt)).where(_D.state == PENDING, _unblocked())
        leased = select(func.min(_D.lease_until)).where(_D.state == SENDING)
        if channel_prefix:
            match = _D.channel.startswith(channel_prefix, autoescape=True)
            pending, leased = pending.where(match), leased.where(match)
        async with self.store.reading() as session:
            times = [(await session.fetch(s))[0][0] for s in (pending, leased)]
        return min((t for t in times if t is not None), default=None)

    def _statement(self, outcome: Outcome, now: datetime) -> Any:
        values: dict[str, Any]
        if outcome.state == SENT:
            values = {"state": SENT, "sent": now, "last_error": None}
        elif outcome.state == PENDING:
            values = {"state": PENDING}
            if outcome.untried:
                values["attempts"] = _D.attempts - 1
            delay = outcome.later
            if delay is None and not outcome.untried:
                delay = self.backoff.delay(outcome.delivery.attempts)
            if delay is not None:
                values["next_attempt"] = now + timedelta(seconds=delay)
        else:
            values = {"state": FAILED}
        if not outcome.untried:
            values["last_status"] = outcome.status
        if outcome.error is not None:
            values["last_error"] = outcome.error[:ERROR_CHARS]
        d = outcome.delivery
        return (
            update(deliveries)
            .where(_D.id == d.id, _D.state == SENDING, _D.lease_owner == self.owner)
            .values(**values, lease_owner=None, lease_until=None)
        )

    async def status(self, channel_prefix: str = "") -> dict[str, ChannelStatus]:
        """Per channel (see the module docstring); channels without messages are absent."""
        match = _D.channel.startswith(channel_prefix, autoescape=True) if channel_prefix else None
        counts = select(_D.channel, _D.state, func.count()).group_by(_D.channel, _D.state)
        retrying = (
            select(_D.channel, func.count())
            .where(_D.state == PENDING, _D.attempts > 0)
            .group_by(_D.channel)
        )
        oldest = (
            select(_D.channel, func.min(_D.created))
            .where(_D.state.in_((PENDING, SENDING)))
            .group_by(_D.channel)
        )
        newest_error = (
            select(_D.channel, func.max(_D.id))
            .where(_D.state.in_((PENDING, SENDING, FAILED)), _D.last_error.is_not(None))
            .group_by(_D.channel)
        )
        if match is not None:
            counts, retrying, oldest, newest_error = (
                s.where(match) for s in (counts, retrying, oldest, newest_error)
            )
        result: dict[str, ChannelStatus] = {}
        async with self.store.reading() as session:
            for channel, state, n in await session.fetch(counts):
                entry = result.setdefault(channel, ChannelStatus(channel))
                entry.counts[state] = int(n)
            extra: dict[str, dict[str, Any]] = {c: {} for c in result}
            for channel, n in await session.fetch(retrying):
                extra[channel]["retrying"] = int(n)
            for channel, created in await session.fetch(oldest):
                extra[channel]["oldest_unsent"] = created
            error_ids = [row[1] for row in await session.fetch(newest_error)]
            if error_ids:
                stmt = select(_D.channel, _D.key, _D.last_error).where(_D.id.in_(error_ids))
                for channel, key, error in await session.fetch(stmt):
                    extra[channel]["last_error"] = error
                    extra[channel]["last_error_key"] = key
        return {c: replace(s, **extra[c]) for c, s in sorted(result.items())}

    async def failures(self, channel_prefix: str = "", limit: int = 20) -> Sequence[Delivery]:
        """The newest failed messages (for the status report)."""
        stmt = select(deliveries).where(_D.state == FAILED)
        if channel_prefix:
            stmt = stmt.where(_D.channel.startswith(channel_prefix, autoescape=True))
        async with self.store.reading() as session:
            rows = await session.fetch(stmt.order_by(_D.id.desc()).limit(limit))
        return [Delivery.of(r) for r in rows]
