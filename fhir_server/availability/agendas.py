"""What ``availability`` keeps per process, and how it is read from the database.

Per Schedule an ``Agenda``: the index rows of its Slots (``schedule+start`` pair rows as
microseconds, sorted by start, with their ``status`` tokens numbered per cache), its pk and its
relative ``actor`` references. Per step of the SAS chain a ``Link``: the Practitioners holding
an identifier, the Schedules having a Practitioner as actor. Each entry is read at the
version of its change key (``watch``), the counter read *before* the rows: an entry can be
newer than its version, never older, so a search that finds the same counter in its own
snapshot knows the entry still holds.

``preload`` reads them all at start-up; otherwise each is read by the first search that
needs it.
"""

from __future__ import annotations

import asyncio
import time
from array import array
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import Text, and_, bindparam, false, select

from fhir_server.search.indexing import composites, watch
from fhir_server.storage import schema
from fhir_server.storage.arrays import any_in
from fhir_server.storage.port import ReadSession, Store

R = schema.resources
RD = schema.idx_ref_date
REF = schema.idx_reference
TOKEN = schema.idx_token
VERSIONS = schema.watch_versions

SLOT, SCHEDULE, PRACTITIONER = "Slot", "Schedule", "Practitioner"
STATUS = "status"  # the token parameter of Slot the agendas keep
ACTOR = "actor"  # Schedule.actor: what ``_include:iterate=Schedule:actor`` follows
IDENTIFIER = "identifier"  # Practitioner.identifier: the end of the SAS chain
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
Token = tuple[str | None, str | None]  # (system, code) of a status row
# What a slot's number in ``Agenda.statuses`` stands for: its status tokens and its labels
# (``resources.labels``, the TRE-R314 types the access policy shows to each role)
Kind = tuple[tuple[Token, ...], str | None]


def micros(moment: datetime) -> int:
    return (moment - _EPOCH) // _MICROSECOND  # storage reads instants aware, in UTC


# -- what is cached -------------------------------------------------------------------------


@dataclass(slots=True)
class Agenda:
    """One Schedule's slots as the index says, sorted by start, read at ``version``."""

    version: int
    schedule_pk: int | None  # None: no such Schedule, or deleted
    actors: tuple[tuple[str, str], ...]  # its ``actor`` relative references (type, id)
    lows: array[int] = field(default_factory=lambda: array("q"))
    highs: array[int] = field(default_factory=lambda: array("q"))
    pks: array[int] = field(default_factory=lambda: array("q"))
    statuses: array[int] = field(default_factory=lambda: array("H"))  # AvailabilityCache.tokens
    servable: bool = True  # False: a slot has an open start range; SQL answers instead

    @property
    def size(self) -> int:
        return len(self.pks) + 1


@dataclass(slots=True)
class Link:
    """The ids a chain step leads to (holders of an identifier, schedules of an actor), read
    at ``version``."""

    version: int
    ids: tuple[str, ...]

    @property
    def size(self) -> int:
        return len(self.ids) + 1


Entry = Agenda | Link


class AvailabilityCache:
    """Agendas and links by change key (``watch``), least recently used dropped first once
    they hold more than ``max_slots`` slots (a link's id counts as one). One per process;
    coroutines share it (an entry is replaced whole, never modified)."""

    def __init__(self, max_slots: int) -> None:
        self.max_slots = max_slots
        self._agendas: OrderedDict[str, Entry] = OrderedDict()
        self._slots = 0
        # the distinct (status token set, labels) of the slots, numbered (a handful: free,
        # busy... times PUBLIC, PUBLIC+SNP...): a search tests each kind once, not each slot
        self.tokens: list[Kind] = []
        self._token_numbers: dict[Kind, int] = {}
        self.served = self.fills = self.stale = self.declined = 0  # for tests and logs

    def __len__(self) -> int:
        return len(self._agendas)

    def __contains__(self, key: str) -> bool:
        return key in self._agendas

    def get(self, key: str) -> Entry | None:
        agenda = self._agendas.get(key)
        if agenda is not None:
            self._agendas.move_to_end(key)
        return agenda

    def put(self, key: str, agenda: Entry) -> None:
        self.drop(key)
        self._agendas[key] = agenda
        self._slots += agenda.size
        while self._slots > self.max_slots and self._agendas:
            _, evicted = self._agendas.popitem(last=False)
            self._slots -= evicted.size

    @property
    def slots(self) -> int:
        return self._slots

    def token_number(self, tokens: Kind) -> int:
        number = self._token_numbers.get(tokens)
        if number is None:
            number = self._token_numbers[tokens] = len(self.tokens)
            self.tokens.append(tokens)
        return number

    def drop(self, key: str) -> None:
        old = self._agendas.pop(key, None)
        if old is not None:
            self._slots -= old.size


# what reads the entries of some keys (key -> what it needs) and caches them at versions
Filler = Callable[[ReadSession, AvailabilityCache, dict[str, Any], dict[str, int]], Awaitable[None]]


# -- warming up -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Preloaded:
    schedules: int
    slots: int
    seconds: float
    complete: bool  # False: the cache filled up first


_SCHEDULES_AFTER = (
    select(R.c.pk, R.c.res_id)
    .where(R.c.res_type == SCHEDULE, R.c.deleted == false(), R.c.pk > bindparam("after"))
    .order_by(R.c.pk)
    .limit(bindparam("batch"))
)


async def preload(
    store: Store, cache: AvailabilityCache, *, batch: int = 50, pause: float = 0.0
) -> Preloaded:
    """Read the agendas of every Schedule (in pk order), then the links of the SAS chain
    (the schedules of every Practitioner actor, the holders of every Practitioner
    identifier), until the cache is full, ``batch`` agendas (or ten times as many links) per
    statement, yielding to the event loop between batches (and ``pause`` seconds): a process
    started on a large database answers its first SAS searches from memory instead of
    reading what each needs on the first search that does."""
    started = time.perf_counter()
    schedules, complete = 0, True
    after = 0
    while complete:
        async with store.reading() as session:
            rows = await session.fetch(_SCHEDULES_AFTER, {"after": after, "batch": batch})
            if not rows:
                break
            after = int(rows[-1][0])
            wanted = {watch.key(SCHEDULE, str(r[1])): str(r[1]) for r in rows}
            schedules += await _preload_batch(session, cache, wanted, fill_agendas)
        complete = cache.slots < cache.max_slots
        await asyncio.sleep(pause)
    actors = (
        select(REF.c.target_id)
        .where(
            REF.c.res_type == SCHEDULE,
            REF.c.param == ACTOR,
            REF.c.target_type == PRACTITIONER,
            REF.c.url.is_(None),
        )
        .distinct()
    )
    identifiers = (
        select(TOKEN.c.system, TOKEN.c.code)
        .where(
            TOKEN.c.res_type == PRACTITIONER,
            TOKEN.c.param == IDENTIFIER,
            TOKEN.c.system.is_not(None),
            TOKEN.c.system != "",
            TOKEN.c.code.is_not(None),
        )
        .distinct()
    )
    async with store.reading() as session:
        ids = [str(r[0]) for r in await session.fetch(actors)]
        tokens = [(str(r[0]), str(r[1])) for r in await session.fetch(identifiers)]
    links: list[tuple[dict[str, Any], Filler]] = []
    for i in range(0, len(ids), batch * 10):
        chunk = ids[i : i + batch * 10]
        links.append(
            (
                {watch.pointer_key(SCHEDULE, ACTOR, PRACTITIONER, t): t for t in chunk},
                fill_pointers,
            )
        )
    for i in range(0, len(tokens), batch * 10):
        pairs = tokens[i : i + batch * 10]
        links.append(
            (
                {watch.token_key(PRACTITIONER, IDENTIFIER, s, c): (s, c) for s, c in pairs},
                fill_holders,
            )
        )
    for wanted, fill in links:
        complete = complete and cache.slots < cache.max_slots
        if not complete:
            break
        async with store.reading() as session:
            await _preload_batch(session, cache, wanted, fill)
        await asyncio.sleep(pause)
    return Preloaded(schedules, cache.slots, time.perf_counter() - started, complete)


async def _preload_batch(
    session: ReadSession, cache: AvailabilityCache, wanted: dict[str, Any], fill: Filler
) -> int:
    """Read the entries of ``wanted`` that are not cached yet; how many were read."""
    missing = {k: v for k, v in wanted.items() if k not in cache}
    if missing:
        read_at = await versions(session, list(missing))
        await fill(session, cache, missing, read_at)
    return len(missing)


# -- statements -----------------------------------------------------------------------------


async def versions(session: ReadSession, keys: list[str]) -> dict[str, int]:
    stmt = _versions_statement(session.dialect)
    return {str(k): int(v) for k, v in await session.fetch(stmt, {"keys": keys})}


@cache
def _versions_statement(dialect: str) -> Any:
    return select(VERSIONS.c.key, VERSIONS.c.version).where(
        any_in(dialect, VERSIONS.c.key, "keys", Text)
    )


async def fill_agendas(
    session: ReadSession,
    cache: AvailabilityCache,
    wanted: dict[str, Any],
    versions: dict[str, int],
) -> None:
    """Read the agendas of ``wanted`` (key -> Schedule id) and cache them at ``versions``.

    The versions were read first: a write committed in between moved its counter past the
    cached version, so the next search sees the agenda stale and reads it again; an agenda
    can be newer than its version, never older."""
    ids = list(wanted.values())
    slots, schedules = _fill_statements(session.dialect)
    rows: dict[str, dict[int, tuple[int | None, int | None, set[Token], str | None]]] = {
        i: {} for i in ids
    }
    fetched = await session.fetch(slots, {"ids": ids})
    for target, pk, low, high, system, code, labels in fetched:
        entry = rows[target].get(pk)
        if entry is None:
            entry = (
                None if low is None else micros(low),
                None if high is None else micros(high),
                set(),
                labels,
            )
            rows[target][pk] = entry
        if code is not None or system is not None:
            entry[2].add((system, code))
    heads: dict[str, tuple[int, list[tuple[str, str]]]] = {}
    for res_id, pk, target_type, target_id in await session.fetch(schedules, {"ids": ids}):
        head = heads.setdefault(res_id, (pk, []))
        if target_type is not None and target_id is not None:
            head[1].append((target_type, target_id))
    for key, res_id in wanted.items():
        pk, actors = heads.get(res_id, (None, []))
        agenda = Agenda(versions.get(key, 0), pk, tuple(sorted(set(actors))))
        for slot_pk, (low, high, tokens, labels) in sorted(
            rows[res_id].items(), key=lambda item: (item[1][0] or 0, item[0])
        ):
            if low is None or high is None:
                agenda.servable = False
                continue
            agenda.lows.append(low)
            agenda.highs.append(high)
            agenda.pks.append(slot_pk)
            kind = (tuple(sorted(tokens, key=str)), labels)
            agenda.statuses.append(cache.token_number(kind))
        cache.fills += 1
        cache.put(key, agenda)


@cache
def _fill_statements(dialect: str) -> tuple[Any, Any]:
    """An agenda's slot rows (pair row + status tokens + labels) and its Schedule with its
    actors."""
    pair = composites.pair_for(SLOT, "schedule")
    assert pair is not None
    status = TOKEN.alias("status")
    on = [status.c.res_pk == RD.c.res_pk, status.c.param == STATUS]
    if dialect != "sqlite":
        # Redundant (``res_pk`` is a Slot's), and harmful on SQLite: without statistics its
        # planner prefers the index matching more equalities, (res_type, param, ...), and
        # reads every Slot's status row for each slot (minutes at 100 k slots).
        on.append(status.c.res_type == SLOT)
    slots = (
        select(
            RD.c.target_id,
            RD.c.res_pk,
            RD.c.low,
            RD.c.high,
            status.c.system,
            status.c.code,
            R.c.labels,
        )
        .select_from(RD.join(R, R.c.pk == RD.c.res_pk).outerjoin(status, and_(*on)))
        .where(
            RD.c.res_type == SLOT,
            RD.c.param == pair.name,
            RD.c.target_type == SCHEDULE,
            any_in(dialect, RD.c.target_id, "ids", Text),
        )
    )
    actor = REF.alias("actor")
    schedules = (
        select(R.c.res_id, R.c.pk, actor.c.target_type, actor.c.target_id)
        .select_from(
            R.outerjoin(
                actor,
                and_(
                    actor.c.res_pk == R.c.pk,
                    actor.c.param == ACTOR,
                    actor.c.url.is_(None),
                    actor.c.target_id.is_not(None),
                    actor.c.target_type.is_not(None),
                ),
            )
        )
        .where(
            R.c.res_type == SCHEDULE,
            any_in(dialect, R.c.res_id, "ids", Text),
            R.c.deleted == false(),
        )
    )
    return slots, schedules


async def fill_holders(
    session: ReadSession,
    cache: AvailabilityCache,
    wanted: dict[str, Any],
    versions: dict[str, int],
) -> None:
    """Who holds each identifier: key -> (system, value), as ``matchers._token`` matches."""
    codes = sorted({c for _, c in wanted.values()})
    rows = await session.fetch(_holders_statement(session.dialect), {"codes": codes})
    _put_links(cache, wanted, versions, (((system, code), res_id) for system, code, res_id in rows))


def _put_links(
    cache: AvailabilityCache,
    wanted: dict[str, Any],
    versions: dict[str, int],
    found: Iterable[tuple[Any, str]],
) -> None:
    """Cache a ``Link`` per wanted key (key -> what it starts from) from (start, id) pairs."""
    ids: dict[Any, set[str]] = {}
    for start, res_id in found:
        ids.setdefault(start, set()).add(res_id)
    for key, start in wanted.items():
        cache.fills += 1
        cache.put(key, Link(versions.get(key, 0), tuple(sorted(ids.get(start, ())))))


@cache
def _holders_statement(dialect: str) -> Any:
    return (
        select(TOKEN.c.system, TOKEN.c.code, R.c.res_id)
        .select_from(TOKEN.join(R, R.c.pk == TOKEN.c.res_pk))
        .where(
            TOKEN.c.res_type == PRACTITIONER,
            TOKEN.c.param == IDENTIFIER,
            any_in(dialect, TOKEN.c.code, "codes", Text),
            R.c.deleted == false(),
        )
    )


async def fill_pointers(
    session: ReadSession,
    cache: AvailabilityCache,
    wanted: dict[str, Any],
    versions: dict[str, int],
) -> None:
    """Which Schedules have each Practitioner as a (relative) actor: key -> its id."""
    params = {"ids": list(wanted.values())}
    rows = await session.fetch(_pointers_statement(session.dialect), params)
    _put_links(cache, wanted, versions, ((target, res_id) for target, res_id in rows))


@cache
def _pointers_statement(dialect: str) -> Any:
    return (
        select(REF.c.target_id, R.c.res_id)
        .select_from(REF.join(R, R.c.pk == REF.c.res_pk))
        .where(
            REF.c.res_type == SCHEDULE,
            REF.c.param == ACTOR,
            REF.c.target_type == PRACTITIONER,
            any_in(dialect, REF.c.target_id, "ids", Text),
            REF.c.url.is_(None),
            R.c.deleted == false(),
        )
    )
