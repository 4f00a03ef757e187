"""search (type level, GET or POST _search): https://hl7.org/fhir/R4/http.html#search.

Matches and included resources are served from their stored bytes. ``total`` counts matches
only; included resources never count against ``_count`` and are never truncated. The
``self`` link echoes the query as received. Unknown parameters are ignored and reported in an
OperationOutcome entry (``search.mode=outcome``); with ``Prefer: handling=strict`` they are a
400. ``_explain=true`` answers how the query would run instead of running it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import orjson

from fhir_server.core import errors, fhirtime
from fhir_server.core.errors import Issue
from fhir_server.interactions import instants
from fhir_server.interactions._resource import check_type
from fhir_server.interactions.bundles import bundle, resource_fragment
from fhir_server.interactions.context import Context
from fhir_server.interactions.subsetting import subset
from fhir_server.search.availability import answer as availability
from fhir_server.search.query import cursor, include, plan, run
from fhir_server.search.query import parse as p
from fhir_server.search.registry.parameters import Registry
from fhir_server.storage.port import ReadSession, Stored


@dataclass(frozen=True)
class SearchRequest:
    res_type: str
    pairs: list[tuple[str, str]]
    base_url: str
    strict: bool = False
    raw_query: str | None = None  # as received, for the self link


@dataclass(frozen=True)
class SearchResult:
    body: bytes


def _page_size(ctx: Context, query: p.Query) -> int:
    if query.count is None:
        return ctx.default_count
    return min(query.count, ctx.max_count)


def _self_link(req: SearchRequest) -> str:
    query = req.raw_query if req.raw_query is not None else urlencode(req.pairs)
    return f"{req.base_url}/{req.res_type}" + (f"?{query}" if query else "")


def _link(req: SearchRequest, size: int, position: str) -> str:
    pairs = [(k, v) for k, v in req.pairs if k not in ("_count", "_offset", "_cursor")]
    pairs += [("_count", str(size)), ("_cursor", position)]
    return f"{req.base_url}/{req.res_type}?{urlencode(pairs)}"


def _explanation(query: p.Query, specs: list[include.IncludeSpec]) -> bytes:
    lines = plan.explain(query).splitlines() + [str(s) for s in specs]
    issues = [Issue("informational", line, "information") for line in lines]
    return orjson.dumps(
        {"resourceType": "OperationOutcome", "issue": [i.to_json() for i in issues]}
    )


async def search(ctx: Context, req: SearchRequest) -> SearchResult:
    check_type(req.res_type)
    query = p.parse(ctx.registry, req.res_type, req.pairs, default_tz=ctx.timezone)
    if query.unknown and req.strict:
        raise errors.incorrect(
            f"unknown search parameter(s): {', '.join(query.unknown)}",
            code="not-supported",
            expression=list(query.unknown),
        )
    specs = [
        include.parse_include(ctx.registry, i.value, reverse=i.reverse, iterate=i.iterate)
        for i in query.include
    ]
    if query.controls.get("_explain") in ("true", "1"):
        return SearchResult(_explanation(query, specs))
    size = _page_size(ctx, query)
    counting_only = query.summary == "count"
    cursor_text = query.controls.get("_cursor")
    async with ctx.store.reading() as session:
        # The SAS slot search, from this process's agendas (one statement) when it can:
        # with the SAS chain as sent, else once other chains are resolved to references.
        fast = await _from_agendas(ctx, session, query, specs, size)
        if fast is None:
            resolved = await run.prefetch_chains(session, ctx.registry, query)
            if resolved is not query and availability.shape_of(query, specs) is None:
                fast = await _from_agendas(ctx, session, resolved, specs, size)
            query = resolved
        if fast is not None:
            page, matches, included = None, fast.matches, fast.included
            total = None if query.total == "none" else len(matches)  # all in one page
        else:
            page, matches, total, included = await _sql_search(
                ctx, req, query, specs, session, size, cursor_text, counting_only
            )
    entries: list[dict[str, Any] | orjson.Fragment] = []
    for mode, group in (("match", matches), ("include", included)):
        for stored in group:
            entries.append(_entry(req, stored, mode, query, ctx))
    if query.unknown:
        entries.append(_unknown_entry(query.unknown))
    links = [("self", _self_link(req))]
    if page is not None and page.next_cursor:
        links.append(("next", _link(req, size, page.next_cursor)))
    if page is not None and page.previous_cursor:
        links.append(("previous", _link(req, size, page.previous_cursor)))
    return SearchResult(bundle("searchset", entries, total=total, links=links))


async def _from_agendas(
    ctx: Context,
    session: ReadSession,
    query: p.Query,
    specs: list[include.IncludeSpec],
    size: int,
) -> availability.Answer | None:
    if ctx.availability is None:
        return None  # (a cursor or _summary=count: ``availability.shape_of`` declines)
    return await availability.answer(
        session, ctx.availability, query, specs, size, fhirtime.utcnow()
    )


async def _sql_search(
    ctx: Context,
    req: SearchRequest,
    query: p.Query,
    specs: list[include.IncludeSpec],
    session: ReadSession,
    size: int,
    cursor_text: str | None,
    counting_only: bool,
) -> tuple[cursor.Page | None, list[Stored], int | None, list[Stored]]:
    """The page, its matches, ``total`` and the included resources, through SQL."""
    if counting_only:
        page, matches = None, []
    else:
        # Keyset paging: the cursor carries the last row's sort values and key, so a page
        # never repeats or skips rows that were not themselves changed meanwhile.
        criteria = [(k, v) for k, v in req.pairs if k not in ("_cursor", "_count", "_offset")]
        page = await cursor.search_page(
            session,
            ctx.registry,
            req.res_type,
            criteria,
            default_tz=ctx.timezone,
            cursor=cursor_text,
            limit=size,
            columns=include.COLUMNS,
            secret=ctx.cursor_secret,
            parsed=query,
        )
        matches = [include.stored_from_row(r) for r in page.rows]
    first_and_last = page is not None and cursor_text is None and page.next_cursor is None
    total: int | None
    if query.total == "none" and not counting_only:
        total = None
    elif first_and_last:
        total = len(matches)  # everything fitted in the first page
    else:
        count_rows = await session.fetch(plan.count_statement(query))
        total = int(count_rows[0][0])
    included = (
        await include.resolve(session, specs, matches, _has_filters(query, ctx.registry))
        if page
        else []
    )
    return page, matches, total, included


def _has_filters(query: p.Query, registry: Registry) -> include.Filters:
    """``_has:Slot:schedule:x`` criteria also narrow ``_revinclude=Slot:schedule``.

    The SAS SOS search asks for Schedules having a free Slot in a window and revincludes
    their Slots: plain FHIR would include every Slot of those Schedules (busy ones, past
    ones), which is exactly the "shown but not available" problem SAS exists to avoid. So
    the revincluded resources must satisfy the same one-hop ``_has`` criteria.
    """
    grouped: dict[tuple[str, str], list[p.Criterion]] = {}
    for c in query.criteria:
        if len(c.path) == 1 and c.path[0].reverse and len(c.path[0].sources) == 1:
            link = c.path[0]
            plain = dataclasses.replace(c, name=c.param.code, path=(), res_types=())
            grouped.setdefault((link.sources[0], link.code), []).append(plain)
    out: include.Filters = {}
    for (source, code), criteria in grouped.items():
        param = registry.get(source, code)
        if param is not None:
            out[(source, code)] = include.Filter(param, criteria)
    return out


# An entry served as stored is written as bytes: the same JSON as the dict below, without
# building ~150 dicts per SAS answer for orjson to walk.
_MODE_TAILS = {
    mode: b',"search":{"mode":"' + mode.encode() + b'"}}' for mode in ("match", "include")
}


def _entry(
    req: SearchRequest, stored: Stored, mode: str, query: p.Query, ctx: Context
) -> dict[str, Any] | orjson.Fragment:
    resource: Any = resource_fragment(stored)
    memo = None if stored.pk is None else (ctx.retimed, (stored.pk, stored.version))
    retimed = instants.normalised(stored.content, stored.res_type, ctx.timezone, memo)
    subsetting = query.summary not in (None, "false") or bool(query.elements)
    if retimed is None and not subsetting:
        url = orjson.dumps(f"{req.base_url}/{stored.res_type}/{stored.res_id}")
        return orjson.Fragment(
            b'{"fullUrl":' + url + b',"resource":' + stored.content + _MODE_TAILS[mode]
        )
    if retimed is not None:
        resource = retimed
    if subsetting:
        resource = subset(retimed or orjson.loads(stored.content), query.summary, query.elements)
    return {
        "fullUrl": f"{req.base_url}/{stored.res_type}/{stored.res_id}",
        "resource": resource,
        "search": {"mode": mode},
    }


def _unknown_entry(names: list[str]) -> dict[str, Any]:
    issues = [
        Issue("not-supported", f"unknown search parameter {name!r} was ignored", "warning")
        for name in names
    ]
    return {
        "resource": {"resourceType": "OperationOutcome", "issue": [i.to_json() for i in issues]},
        "search": {"mode": "outcome"},
    }
