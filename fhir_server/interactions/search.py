"""search (type level, GET or POST _search): https://hl7.org/fhir/R4/http.html#search.

Matches and included resources are served from their stored bytes. ``total`` counts matches
only; included resources never count against ``_count`` and are never truncated. The
``self`` link echoes the query as received. Unknown parameters are ignored and reported in an
OperationOutcome entry (``search.mode=outcome``); with ``Prefer: handling=strict`` they are a
400. ``_explain=true`` answers how the query would run instead of running it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import orjson

from fhir_server.core.errors import Issue
from fhir_server.core.outcomes import outcome
from fhir_server.interactions import access, instants
from fhir_server.interactions._resource import check_type
from fhir_server.interactions.bundles import bundle, resource_fragment
from fhir_server.interactions.context import Context
from fhir_server.interactions.subsetting import subset
from fhir_server.search.execute import Page
from fhir_server.search.query import cursor
from fhir_server.search.query import parse as p
from fhir_server.storage.port import Stored


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


async def search(ctx: Context, req: SearchRequest) -> SearchResult:
    check_type(req.res_type)
    access.require(ctx, "search", req.res_type)
    async with ctx.store.reading(ctx.caller) as session:
        page = await ctx.search.execute(session, req.res_type, req.pairs, strict=req.strict)
    if page.explanation:
        issues = [Issue("informational", line, "information") for line in page.explanation]
        return SearchResult(orjson.dumps(outcome(issues)))
    return SearchResult(_searchset(ctx, req, page))


def _searchset(ctx: Context, req: SearchRequest, page: Page) -> bytes:
    entries: list[dict[str, Any] | orjson.Fragment] = []
    for mode, group in (("match", page.matches), ("include", page.included)):
        for stored in group:
            entries.append(_entry(req, stored, mode, page.query, ctx))
    if page.query.unknown:
        entries.append(_unknown_entry(page.query.unknown))
    links = [("self", _self_link(req))]
    if page.next_cursor:
        links.append(("next", _link(req, page.size, page.next_cursor)))
    if page.previous_cursor:
        links.append(("previous", _link(req, page.size, page.previous_cursor)))
    return bundle("searchset", entries, total=page.total, links=links)


def _self_link(req: SearchRequest) -> str:
    query = req.raw_query if req.raw_query is not None else urlencode(req.pairs)
    return f"{req.base_url}/{req.res_type}" + (f"?{query}" if query else "")


def _link(req: SearchRequest, size: int, position: str) -> str:
    pairs = [*cursor.without_paging(req.pairs), ("_count", str(size)), ("_cursor", position)]
    return f"{req.base_url}/{req.res_type}?{urlencode(pairs)}"


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
    return {"resource": outcome(issues), "search": {"mode": "outcome"}}
