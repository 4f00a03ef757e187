"""Running what ``plan`` builds: forward chains resolved to the resources they reach.

``plan`` only builds statements; this module sends the ones whose result shapes the next
statement (the chain prefetch), and the id-only searches of conditional interactions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from zoneinfo import ZoneInfo

from fhir_server.core import fhirtime
from fhir_server.search.query import parse as p
from fhir_server.search.query import plan
from fhir_server.search.registry.parameters import Registry
from fhir_server.storage import schema
from fhir_server.storage.port import ReadSession

MAX_PREFETCH = 1000


async def prefetch_chains(
    session: ReadSession, registry: Registry, query: p.Query, *, now: datetime | None = None
) -> p.Query:
    """The query with its forward chains replaced by the resources they reach.

    A chain is a nest of subqueries that the database may join in any order, and
    PostgreSQL's estimates for the index rows of one type and parameter are poor (the two
    columns are correlated): at 10 M slots it drove ``schedule.actor:Practitioner.identifier``
    from every Schedule of the table and checked each one's practitioner, so the SAS search
    slowed down with the size of the directory. Resolved first (one small statement: the
    Schedules of 5 practitioners), the chain becomes plain ``schedule=Schedule/…``
    references, which the planner answers with one (schedule, start) range scan
    (``composites``) at any table size. A chain that reaches more than ``MAX_PREFETCH``
    resources stays a subquery. ``explain`` shows the unresolved plan."""
    moment = now or fhirtime.utcnow()
    criteria: list[p.Criterion] = []
    for c in query.criteria:
        resolved = None
        if c.path and not c.path[0].reverse:
            resolved = await _prefetched(session, registry, c, moment)
        criteria.append(resolved or c)
    if all(a is b for a, b in zip(criteria, query.criteria, strict=True)):
        return query
    return replace(query, criteria=criteria)


async def _prefetched(
    session: ReadSession, registry: Registry, c: p.Criterion, now: datetime
) -> p.Criterion | None:
    built = plan.chain_targets(registry, c, now, MAX_PREFETCH + 1, plan.hops_of(session))
    if built is None:
        return None
    statement, param = built
    rows = await session.fetch(statement)
    if len(rows) > MAX_PREFETCH:
        return None
    values = tuple(p.ReferenceValue(str(t), str(i)) for t, i in sorted(rows))
    return p.Criterion(c.name, param, None, values, c.raw)


async def search_ids(
    session: ReadSession,
    registry: Registry,
    res_type: str,
    pairs: Sequence[tuple[str, str]],
    *,
    default_tz: ZoneInfo,
    now: datetime | None = None,
) -> tuple[list[str], p.Query]:
    """Ids of the matching resources in result order, and the parsed query (the searches
    of conditional interactions and identifier checks: no page, no includes)."""
    query = p.parse(registry, res_type, pairs, default_tz=default_tz)
    if query.count == 0:
        return [], query
    query = await prefetch_chains(session, registry, query, now=now)
    hops = plan.hops_of(session)
    stmt = plan.statement(query, now=now, columns=[schema.resources.c.res_id], hops=hops)
    only = session.visible(plan.R)  # a conditional write or an identifier check: the
    if only is not None:  # caller's rows only, or it would act on (or return) another's
        stmt = stmt.where(only)
    rows = await session.fetch(stmt)
    return [row[0] for row in rows], query
