"""``_include`` and ``_revinclude`` (with ``:iterate``): https://hl7.org/fhir/R4/search.html#include.

Only relative references (``Type/id``) are followed, as in chains: an absolute URL names a
resource on another server even when its tail looks like one of ours.

Included resources are found through the reference index written with each resource, so no
stored JSON is parsed: ``_include=Slot:schedule`` reads the ``schedule`` rows of the matched
Slots; ``_revinclude=Slot:schedule`` reads the Slots whose ``schedule`` rows point at the
matched Schedules. ``:iterate`` applies the same step to what was included, until nothing new
comes (bounded). Included resources never count against ``_count`` and are never truncated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, and_, false, or_, select, tuple_

from fhir_server.core import errors
from fhir_server.search.query import parse as p
from fhir_server.search.query import plan
from fhir_server.search.registry.parameters import Registry, SearchParameter
from fhir_server.storage import schema
from fhir_server.storage.arrays import any_in
from fhir_server.storage.port import ReadSession, Stored
from fhir_server.storage.rows import STORED_COLUMNS as COLUMNS
from fhir_server.storage.rows import stored_from_row

R = schema.resources
REF = schema.idx_reference
MAX_ITERATIONS = 8  # an include:iterate cycle stops here whatever the data


@dataclass(frozen=True)
class IncludeSpec:
    source: str
    param: str | None  # None: every reference parameter of the source (``*``)
    target: str | None
    reverse: bool
    iterate: bool

    def __str__(self) -> str:
        kind = "_revinclude" if self.reverse else "_include"
        tail = f":{self.target}" if self.target else ""
        return f"{kind}{':iterate' if self.iterate else ''}={self.source}:{self.param or '*'}{tail}"


def parse_include(registry: Registry, value: str, *, reverse: bool, iterate: bool) -> IncludeSpec:
    name = "_revinclude" if reverse else "_include"
    parts = value.split(":")
    if value == "*":
        parts = ["*", "*"]
    if len(parts) not in (2, 3) or not all(parts):
        raise errors.incorrect(
            f"{name}={value}: expected SourceType:parameter[:TargetType]", expression=[name]
        )
    source, code = parts[0], parts[1]
    target = parts[2] if len(parts) == 3 else None
    if code == "*":
        return IncludeSpec(source, None, target, reverse, iterate)
    param = registry.get(source, code)
    if param is None:
        raise errors.incorrect(
            f"{name}={value}: {source} has no search parameter {code!r}", expression=[name]
        )
    if param.type != "reference":
        raise errors.incorrect(
            f"{name}={value}: {source}.{code} is a {param.type} parameter, not a reference",
            expression=[name],
        )
    if target is not None and param.target and target not in param.target:
        raise errors.incorrect(
            f"{name}={value}: {source}.{code} cannot point to {target}", expression=[name]
        )
    return IncludeSpec(source, code, target, reverse, iterate)


def _pk_in(session: ReadSession, column: Any, pks: list[int]) -> ColumnElement[bool]:
    """``column IN pks``, one array parameter on PostgreSQL: a SAS answer's 150 slots would
    otherwise be 150 parameters expanded into the SQL at every execution."""
    return any_in(session.dialect, column, "pks", BigInteger, pks)


async def _forward(session: ReadSession, spec: IncludeSpec, sources: list[Stored]) -> list[Stored]:
    """What the ``spec`` references of ``sources`` point at, in one statement: the reference
    rows select the targets as a semi-join, so a Schedule that 150 Slots point at is read
    once, and no second round trip loads the targets."""
    pks = sorted({s.pk for s in sources if s.res_type == spec.source and s.pk is not None})
    if not pks:
        return []
    where = [_pk_in(session, REF.c.res_pk, pks), REF.c.target_id.is_not(None), REF.c.url.is_(None)]
    if spec.param is not None:
        where.append(REF.c.param == spec.param)
    if spec.target is not None:
        where.append(REF.c.target_type == spec.target)
    targets = select(REF.c.target_type, REF.c.target_id).where(*where)
    stmt = (
        select(*COLUMNS)
        .where(tuple_(R.c.res_type, R.c.res_id).in_(targets), R.c.deleted == false())
        .order_by(R.c.pk)  # a stable answer: the same bytes for the same data
    )
    return await _visible_rows(session, stmt)


async def _visible_rows(session: ReadSession, stmt: Any) -> list[Stored]:
    """The resources ``stmt`` selects that the session's caller may see (nothing leaks
    through an include: ``storage.port``, ``visible``)."""
    only = session.visible(R)
    if only is not None:
        stmt = stmt.where(only)
    return [stored_from_row(r) for r in await session.fetch(stmt)]


async def _reverse(session: ReadSession, spec: IncludeSpec, targets: list[Stored]) -> list[int]:
    wanted = [
        (t.res_type, t.res_id) for t in targets if spec.target is None or t.res_type == spec.target
    ]
    if not wanted:
        return []
    conditions: list[ColumnElement[bool]] = [
        REF.c.res_type == spec.source,
        REF.c.url.is_(None),
        or_(*[and_(REF.c.target_type == t, REF.c.target_id == i) for t, i in wanted])
        if len(wanted) <= 50
        else tuple_(REF.c.target_type, REF.c.target_id).in_(wanted),
    ]
    if spec.param is not None:
        conditions.append(REF.c.param == spec.param)
    rows = await session.fetch(select(REF.c.res_pk).where(*conditions).distinct())
    return [int(r[0]) for r in rows]


async def _load_pks(session: ReadSession, pks: Sequence[int]) -> list[Stored]:
    if not pks:
        return []
    stmt = select(*COLUMNS).where(_pk_in(session, R.c.pk, sorted(set(pks))), R.c.deleted == false())
    return await _visible_rows(session, stmt)


@dataclass(frozen=True)
class Filter:
    """Criteria a ``_revinclude`` of ``param``'s source type must also meet (no chains)."""

    param: SearchParameter
    criteria: list[p.Criterion]


# by (source type, reference parameter code) of the _revinclude they narrow
Filters = dict[tuple[str, str], Filter]


async def _filtered_reverse(
    session: ReadSession, spec: IncludeSpec, targets: list[Stored], narrow: Filter
) -> list[Stored]:
    """The ``spec.source`` resources pointing at ``targets`` through ``narrow.param`` and
    meeting ``narrow.criteria``: one search, so the planner can use a reference + date
    pair (``composites``): the SOS search reads only the free slots of its window, not every
    slot of the matched schedules."""
    values = tuple(
        p.ReferenceValue(t.res_type, t.res_id)
        for t in targets
        if spec.target is None or t.res_type == spec.target
    )
    if not values:
        return []
    points = p.Criterion(narrow.param.code, narrow.param, None, values, "")
    query = p.Query(spec.source, criteria=[points, *narrow.criteria])
    stmt = select(*COLUMNS).where(*plan.conditions(query, hops=plan.hops_of(session)))
    return await _visible_rows(session, stmt)


async def resolve(
    session: ReadSession,
    specs: list[IncludeSpec],
    matches: list[Stored],
    filters: Filters | None = None,
) -> list[Stored]:
    """Resources included by ``specs`` (none of the matches), in a stable order.

    ``filters`` narrow a ``_revinclude`` of ``(source type, parameter)`` to the resources
    meeting extra criteria (see ``_has_filters`` in the search interaction).
    """
    filters = filters or {}
    if not specs or not matches:
        return []
    seen = {(m.res_type, m.res_id) for m in matches}
    included: list[Stored] = []
    frontier = list(matches)
    for round_ in range(MAX_ITERATIONS):
        active = [s for s in specs if round_ == 0 or s.iterate]
        if not active or not frontier:
            break
        # Non-iterate specs apply to the matches only; iterate ones also to what was added.
        new: list[Stored] = []
        for spec in active:
            pool = frontier if round_ > 0 else matches
            narrow = filters.get((spec.source, spec.param or ""))
            if spec.reverse and narrow is not None:
                found = await _filtered_reverse(session, spec, pool, narrow)
            elif spec.reverse:
                found = await _load_pks(session, await _reverse(session, spec, pool))
            else:
                found = await _forward(session, spec, pool)
            for stored in found:
                key = (stored.res_type, stored.res_id)
                if key not in seen:
                    seen.add(key)
                    new.append(stored)
        included.extend(new)
        frontier = new
    return included
