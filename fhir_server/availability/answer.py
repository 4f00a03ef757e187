"""A per-process cache of each Schedule's agenda: the SAS slot search answered from memory.

The SAS platform asks every few seconds for the free slots of a few practitioners' schedules
in the next 72 hours (``Slot?schedule…&start=ge…&start=le…&status=free`` with the Schedule
and its actors included). Through SQL that is a range scan per schedule, a status check per
slot and two include statements: ~1,000 index and heap pages and five statements per
search, whatever the cache of the database. Here each Schedule's *index rows* (the
``schedule+start`` pair rows of its Slots, their status tokens, the Schedule's actors) are
kept in memory, and a search costs one statement that reads, in one snapshot:

- the change counters (``search.watch``) of the schedules asked: equal to the versions the
  agendas were read at, they prove the agendas still hold;
- the stored bytes of the matched Slots, of the Schedules and of their actors, by key.

A stale agenda (a counter moved) is dropped, read again and the statement re-run; what is
returned always comes from that one snapshot, so it is exactly what the SQL search would
have returned then (``tests/search/test_availability.py`` compares both on random data and
writes, on SQLite and PostgreSQL).

Only this shape is served here; any other search goes through ``plan`` unchanged:

- ``Slot`` with exactly one ``schedule`` criterion: ``Schedule/id`` references, or the SAS
  chain ``schedule.actor:Practitioner.identifier=system|value,...`` (resolved from cached
  links: who holds the identifier, which schedules have that actor; any other chain is
  resolved by ``run.prefetch_chains`` first), at least one plain ``start`` criterion (any
  prefix), and plain ``status`` token criteria;
- no ``_sort``, no paging position, no ``_summary=count``, every match in the first page;
- ``_include`` of ``Slot:schedule`` and ``_include:iterate`` of ``Schedule:actor`` only.

What the caller may see (``ReadScope``, the access policy's) is applied here too, not by
stepping aside: each slot's labels are cached with its status (one numbered kind), so a
role that sees only some slot types costs one test per kind, not per slot; included
actors of a type the caller may not read in full send the search to SQL.

Dates are tested with ``matchers.date_match``, the same definition the SQL is built from,
here in Python over microseconds.

What is cached, how it is read and preloaded: ``agendas``.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache, lru_cache
from typing import Any

from sqlalchemy import BigInteger, Text, cast, false, literal, null, select, union_all
from sqlalchemy.sql import Select

from auth.policy import EVERYTHING, ReadScope
from fhir_server.availability.agendas import (
    ACTOR,
    IDENTIFIER,
    PRACTITIONER,
    SCHEDULE,
    SLOT,
    STATUS,
    VERSIONS,
    Agenda,
    AvailabilityCache,
    Entry,
    Filler,
    Kind,
    Link,
    R,
    Token,
    fill_agendas,
    fill_holders,
    fill_pointers,
    micros,
    versions,
)
from fhir_server.search.indexing import composites, watch
from fhir_server.search.query import parse as p
from fhir_server.search.query.include import IncludeSpec
from fhir_server.search.query.matchers import date_match, low_bounds
from fhir_server.search.query.run import MAX_PREFETCH
from fhir_server.storage.arrays import any_in
from fhir_server.storage.port import ReadSession, Stored
from fhir_server.storage.rows import STORED_COLUMNS as COLUMNS
from fhir_server.storage.rows import stored_from_row

MAX_ROUNDS = 3  # agendas re-read after a concurrent write; then the SQL search answers


# -- dates: matchers.date_match in Python ---------------------------------------------------


class Code:
    """A condition on a slot's ``lo``/``hi`` (microseconds) as Python source, built like a
    SQL ``Match``; its numbers are names (``c0``, ``c1``...) bound at the call, so searches
    that differ only in their dates share one compiled scan (``_scan``)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __and__(self, other: Code) -> Code:
        return Code(f"({self.text} and {other.text})")

    def __or__(self, other: Code) -> Code:
        return Code(f"({self.text} or {other.text})")


class RowSide:
    """``matchers.Side`` over a cached pair row; its range is never open (an agenda with an
    open range is not served, see ``Agenda.servable``). ``constants`` collects the values
    the ``Code`` names, in order."""

    def __init__(self, width: timedelta | None) -> None:
        self.width = width
        self.constants: list[int] = []

    def _name(self, x: datetime) -> str:
        self.constants.append(micros(x))
        return f"c{len(self.constants) - 1}"

    def starts_before(self, x: datetime) -> Code:
        return Code(f"lo < {self._name(x)}")

    def starts_at_or_after(self, x: datetime) -> Code:
        return Code(f"lo >= {self._name(x)}")

    def ends_after(self, x: datetime) -> Code:
        return Code(f"hi > {self._name(x)}")

    def ends_at_or_before(self, x: datetime) -> Code:
        return Code(f"hi <= {self._name(x)}")

    def low_after(self, x: datetime) -> Code:
        return Code(f"lo > {self._name(x)}")

    def low_before(self, x: datetime) -> Code:
        return Code(f"lo < {self._name(x)}")


Scan = Callable[..., list[int]]


@lru_cache(maxsize=512)
def _scan(condition: str, constants: int) -> Scan:
    """A loop over an agenda's candidates testing ``condition`` (source made only of
    ``lo``, ``hi``, ``c<n>`` names, comparison operators, ``and``/``or`` and parentheses by
    ``Code``: no outside text reaches it). Compiled once per condition shape: ~10x faster
    than calling a closure per comparison, on the hottest loop of the SAS search."""
    names = "".join(f", c{i}" for i in range(constants))
    source = (
        f"def scan(lows, highs, pks, statuses, first, last, ok{names}):\n"
        "    out = []\n"
        "    for i in range(first, last):\n"
        "        lo = lows[i]\n"
        "        hi = highs[i]\n"
        f"        if ok[statuses[i]] and {condition}:\n"
        "            out.append(pks[i])\n"
        "    return out\n"
    )
    namespace: dict[str, Any] = {}
    exec(
        compile(source, "<availability scan>", "exec"),
        {"__builtins__": {"range": range}},
        namespace,
    )
    scan: Scan = namespace["scan"]
    return scan


# -- which searches ------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """A search this module can answer, reduced to what it needs."""

    schedules: tuple[str, ...]  # Schedule ids, in first-mention order (no chain)
    identifiers: tuple[tuple[str, str], ...]  # the chain's system|value (empty: no chain)
    dates: tuple[p.Criterion, ...]
    statuses: tuple[p.Criterion, ...]
    include_schedules: bool
    include_actors: bool
    actor_type: str | None  # ``_include:iterate=Schedule:actor:Type``


def shape_of(query: p.Query, specs: Sequence[IncludeSpec]) -> Shape | None:
    """The search as a ``Shape``, or None when the SQL search must answer it."""
    pair = composites.pair_for(query.res_type, "schedule")
    if query.res_type != SLOT or pair is None or query.sort or query.offset:
        return None
    if query.summary == "count" or "_cursor" in query.controls:
        return None
    schedules: list[str] | None = None
    identifiers: list[tuple[str, str]] = []
    dates: list[p.Criterion] = []
    statuses: list[p.Criterion] = []
    for c in query.criteria:
        if not c.values:
            return None
        if c.path:
            found = _chain_identifiers(c, pair.reference)
            if found is None or schedules is not None:
                return None
            schedules, identifiers = [], found
            continue
        code = c.param.code
        if code == pair.reference and schedules is None:
            schedules = _schedule_ids(c)
            if schedules is None:
                return None
        elif code == pair.date and c.modifier is None:
            dates.append(c)
        elif code == STATUS and c.modifier is None and _tokens(c.values):
            statuses.append(c)
        else:
            return None
    if schedules is None or not dates:
        return None
    include_schedules = include_actors = False
    actor_type: str | None = None
    for spec in specs:
        if spec.reverse or spec.param is None:
            return None
        if (spec.source, spec.param) == (SLOT, pair.reference) and spec.target in (None, SCHEDULE):
            include_schedules = True
        elif (spec.source, spec.param) == (SCHEDULE, ACTOR):
            if spec.iterate:  # not iterated, it applies to the Slots: includes nothing
                if include_actors and actor_type != spec.target:
                    return None
                include_actors, actor_type = True, spec.target
        else:
            return None
    return Shape(
        tuple(dict.fromkeys(schedules)),
        tuple(dict.fromkeys(identifiers)),
        tuple(dates),
        tuple(statuses),
        include_schedules,
        include_actors and include_schedules,
        actor_type,
    )


def _schedule_ids(c: p.Criterion) -> list[str] | None:
    ids: list[str] = []
    for v in c.values:
        if not isinstance(v, p.ReferenceValue) or v.url is not None or v.res_id is None:
            return None
        kind = v.res_type or c.modifier
        if kind != SCHEDULE or c.modifier not in (None, SCHEDULE):
            return None
        ids.append(v.res_id)
    return ids


def _chain_identifiers(c: p.Criterion, reference: str) -> list[tuple[str, str]] | None:
    """``schedule.actor:Practitioner.identifier=system|value,...``: the system|value pairs."""
    if (
        c.modifier is not None
        or len(c.path) != 2
        or (c.param.code, c.param.type)
        != (
            IDENTIFIER,
            "token",
        )
    ):
        return None
    first, second = c.path
    if first.reverse or (first.code, first.targets) != (reference, (SCHEDULE,)):
        return None
    if second.reverse or (second.code, second.targets) != (ACTOR, (PRACTITIONER,)):
        return None
    out: list[tuple[str, str]] = []
    for v in c.values:
        if not isinstance(v, p.TokenValue) or not v.system or v.code is None:
            return None
        out.append((v.system, v.code))
    return out


def _tokens(values: Iterable[p.SearchValue]) -> bool:
    return all(isinstance(v, p.TokenValue) for v in values)


# -- the answer -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    matches: list[Stored]
    included: list[Stored]


async def answer(
    session: ReadSession,
    cache: AvailabilityCache,
    shape: Shape,
    limit: int,
    now: datetime,
    scope: ReadScope = EVERYTHING,
) -> Answer | None:
    """The first page of the search ``shape`` (``shape_of``) from the agendas, or None when
    the SQL search must answer (more matches than ``limit``, agendas larger than the cache,
    or writes racing every round)."""
    if limit <= 0:
        return None
    pair = composites.pair_for(SLOT, "schedule")
    assert pair is not None
    matcher = _Matcher(shape, pair.width, now)
    for _ in range(MAX_ROUNDS):
        used: dict[str, Entry] = {}  # every cache entry the answer rests on
        agendas = await _agendas(session, cache, shape, used)
        if agendas is None or not all(a.servable for a in agendas):
            cache.declined += 1
            return None  # the cache cannot hold them all, a long chain, or an open range
        ok = matcher.accepted(cache.tokens, scope)  # after the fills: they may number new kinds
        found = [(a, matcher.pks(a, ok)) for a in agendas]
        matched = sorted({pk for _, pks in found for pk in pks})
        if len(matched) > limit:
            cache.declined += 1
            return None  # several pages: the SQL search pages with cursors
        heads = [a for a, pks in found if pks and a.schedule_pk is not None]
        schedule_pks = sorted({a.schedule_pk for a in heads if a.schedule_pk is not None})
        if not shape.include_schedules:
            schedule_pks = []
        actors = sorted(
            {
                ref
                for a in heads
                for ref in a.actors
                if shape.actor_type is None or ref[0] == shape.actor_type
            }
        )
        if not shape.include_actors:
            actors = []
        if any(not scope.whole_type(t) for t, _ in actors):
            cache.declined += 1
            return None  # an actor the caller may not see: SQL filters it row by row
        pks = matched + schedule_pks
        statement = _snapshot(session.dialect, bool(pks), bool(actors))
        params: dict[str, Any] = {"keys": list(used), "pks": pks}
        if actors:
            params["types"] = sorted({t for t, _ in actors})
            params["ids"] = sorted({i for _, i in actors})
        rows = await session.fetch(statement, params)
        current = {str(r[2]): int(r[3]) for r in rows if r[0] is None}
        stale = [k for k, e in used.items() if current.get(k, 0) != e.version]
        if stale:
            cache.stale += 1
            for k in stale:
                cache.drop(k)
            continue
        stored = [stored_from_row(r) for r in rows if r[0] is not None]
        by_pk = {s.pk: s for s in stored}
        if any(pk not in by_pk for pk in matched):
            return None  # cannot happen while counters hold; never answer from a doubt
        included = [by_pk[pk] for pk in schedule_pks if pk in by_pk]
        by_ref = {(s.res_type, s.res_id): s for s in stored}
        extra = sorted((by_ref[ref] for ref in actors if ref in by_ref), key=_pk)
        cache.served += 1
        return Answer([by_pk[pk] for pk in matched], included + extra)
    cache.declined += 1
    return None


async def _agendas(
    session: ReadSession, cache: AvailabilityCache, shape: Shape, used: dict[str, Entry]
) -> list[Agenda] | None:
    """The agendas the search is about, their entries (and the chain's) added to ``used``;
    None when the cache cannot hold them or the chain reaches too many schedules."""
    schedules: Iterable[str] = shape.schedules
    if shape.identifiers:
        wanted = {
            watch.token_key(PRACTITIONER, IDENTIFIER, s, c): (s, c) for s, c in shape.identifiers
        }
        holders = await _entries(session, cache, wanted, fill_holders, used)
        if holders is None:
            return None
        practitioners = sorted({i for link in holders for i in _ids(link)})
        pointers = {watch.pointer_key(SCHEDULE, ACTOR, PRACTITIONER, i): i for i in practitioners}
        found = await _entries(session, cache, pointers, fill_pointers, used)
        if found is None:
            return None
        schedules = sorted({i for link in found for i in _ids(link)})
        if len(schedules) > MAX_PREFETCH:
            return None
    keys = {watch.key(SCHEDULE, s): s for s in schedules}
    entries = await _entries(session, cache, keys, fill_agendas, used)
    if entries is None:
        return None
    return [e for e in entries if isinstance(e, Agenda)]


async def _entries(
    session: ReadSession,
    cache: AvailabilityCache,
    wanted: dict[str, Any],
    fill: Filler,
    used: dict[str, Entry],
) -> list[Entry] | None:
    """The cache entries of ``wanted`` (key -> what ``fill`` needs to read it), read with
    ``fill`` where missing; None when the cache cannot hold them all."""
    missing = {k: v for k, v in wanted.items() if cache.get(k) is None}
    if missing:
        read_at = await versions(session, list(missing))  # before the rows: see ``agendas``
        await fill(session, cache, missing, read_at)
    out: list[Entry] = []
    for k in wanted:
        entry = cache.get(k)
        if entry is None:
            return None
        used[k] = entry
        out.append(entry)
    return out


def _ids(entry: Entry) -> tuple[str, ...]:
    return entry.ids if isinstance(entry, Link) else ()


def _pk(stored: Stored) -> int:
    return stored.pk or 0


class _Matcher:
    """The search's date and status criteria over an agenda."""

    def __init__(self, shape: Shape, width: timedelta, now: datetime) -> None:
        side = RowSide(width)
        conditions: list[Code] = []
        lower: int | None = None  # candidates: lower < low < upper
        upper: int | None = None
        for c in shape.dates:
            tests = [date_match(side, v, now) for v in c.values]
            combined = tests[0]
            for t in tests[1:]:
                combined = combined | t  # values are ORed
            conditions.append(combined)
            # the loosest bound of the criterion's values; criteria are ANDed
            bounds = [low_bounds(v, width, now) for v in c.values if isinstance(v, p.DateValue)]
            lows = [b[0] for b in bounds]
            highs = [b[1] for b in bounds]
            if all(b is not None for b in lows):
                c_low = min(micros(b) for b in lows if b is not None)
                lower = c_low if lower is None else max(lower, c_low)
            if all(b is not None for b in highs):
                c_high = max(micros(b) for b in highs if b is not None)
                upper = c_high if upper is None else min(upper, c_high)
        condition = conditions[0]
        for other in conditions[1:]:
            condition = condition & other
        self.scan = _scan(condition.text, len(side.constants))
        self.constants = side.constants
        self.lower, self.upper = lower, upper
        self.statuses = [
            [v for v in c.values if isinstance(v, p.TokenValue)] for c in shape.statuses
        ]

    def accepted(self, kinds: list[Kind], scope: ReadScope) -> list[bool]:
        """For each of the cache's numbered kinds, whether the status criteria hold and the
        caller may see slots of its labels."""
        return [self._status(t) and scope.labels_ok(labels) for t, labels in kinds]

    def pks(self, agenda: Agenda, ok: list[bool]) -> list[int]:
        """The pks of the agenda's slots that match, in start order (``ok``: ``accepted``)."""
        lows = agenda.lows
        first = 0 if self.lower is None else bisect_right(lows, self.lower)
        last = len(lows) if self.upper is None else bisect_left(lows, self.upper)
        return self.scan(
            lows, agenda.highs, agenda.pks, agenda.statuses, first, last, ok, *self.constants
        )

    def _status(self, tokens: tuple[Token, ...]) -> bool:
        return all(
            any(_token_match(v, t) for v in values for t in tokens) for values in self.statuses
        )


def _token_match(value: p.TokenValue, row: Token) -> bool:
    """``matchers._token`` for a plain ``system|code`` value (``|code``: no system)."""
    if value.system is not None and row[0] != (value.system or None):
        return False
    return value.code is None or row[1] == value.code


@cache
def _snapshot(dialect: str, with_pks: bool, with_actors: bool) -> Any:
    """One statement, so one snapshot: the counters of ``:keys`` (rows with a NULL pk) and
    the stored resources of ``:pks`` and of ``:types`` x ``:ids`` (the actors: a few, the
    caller keeps the pairs it asked). Built once per variant: a search only binds values."""
    parts: list[Select[Any]] = [
        select(
            cast(null(), BigInteger),
            literal("#watch"),
            VERSIONS.c.key,
            VERSIONS.c.version,
            cast(null(), R.c.last_updated.type),
            cast(null(), R.c.deleted.type),
            cast(null(), R.c.content.type),
        ).where(any_in(dialect, VERSIONS.c.key, "keys", Text))
    ]
    if with_pks:
        parts.append(
            select(*COLUMNS).where(
                any_in(dialect, R.c.pk, "pks", BigInteger), R.c.deleted == false()
            )
        )
    if with_actors:
        parts.append(
            select(*COLUMNS).where(
                any_in(dialect, R.c.res_type, "types", Text),
                any_in(dialect, R.c.res_id, "ids", Text),
                R.c.deleted == false(),
            )
        )
    return parts[0] if len(parts) == 1 else union_all(*parts)
