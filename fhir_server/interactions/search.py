"""search (type level, GET or POST _search): https://hl7.org/fhir/R4/http.html#search.

Unknown parameters are ignored and reported in an OperationOutcome entry
(``search.mode=outcome``); with ``Prefer: handling=strict`` they are a 400.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from fhir_server.core import errors
from fhir_server.core.errors import Issue
from fhir_server.interactions._resource import check_type
from fhir_server.interactions.bundles import bundle, resource_fragment
from fhir_server.interactions.context import Context
from fhir_server.search import plan


@dataclass(frozen=True)
class SearchRequest:
    res_type: str
    pairs: list[tuple[str, str]]
    base_url: str
    strict: bool = False


def _offset(pairs: list[tuple[str, str]]) -> int:
    for name, value in pairs:
        if name == "_offset":
            if not value.isdigit():
                raise errors.incorrect(
                    f"_offset must be a non-negative integer, got {value!r}", expression=["_offset"]
                )
            return int(value)
    return 0


async def search(ctx: Context, req: SearchRequest) -> bytes:
    check_type(req.res_type)
    criteria = [
        (k, v) for k, v in req.pairs if k not in ("_offset", "_count", "_format", "_pretty")
    ]
    count = ctx.default_count
    for name, value in req.pairs:
        if name == "_count":
            if not value.isdigit():
                raise errors.incorrect(
                    f"_count must be a non-negative integer, got {value!r}", expression=["_count"]
                )
            count = min(int(value), ctx.max_count)
    offset = _offset(req.pairs)
    async with ctx.store.reading() as session:
        ids, query = await plan.search_ids(
            session,
            ctx.registry,
            req.res_type,
            [*criteria, ("_count", str(offset + count))],
            default_tz=ctx.timezone,
        )
        total = await plan.count(
            session, ctx.registry, req.res_type, criteria, default_tz=ctx.timezone
        )
    if query.unknown and req.strict:
        raise errors.incorrect(
            f"unknown search parameter(s): {', '.join(query.unknown)}",
            code="not-supported",
            expression=list(query.unknown),
        )
    page_ids = ids[offset : offset + count]
    stored = await ctx.store.read_many(req.res_type, page_ids)
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": f"{req.base_url}/{s.res_type}/{s.res_id}",
            "resource": resource_fragment(s),
            "search": {"mode": "match"},
        }
        for s in stored
    ]
    if query.unknown:
        issues = [
            Issue("not-supported", f"unknown search parameter {name!r} was ignored", "warning")
            for name in query.unknown
        ]
        entries.append(
            {
                "resource": {
                    "resourceType": "OperationOutcome",
                    "issue": [i.to_json() for i in issues],
                },
                "search": {"mode": "outcome"},
            }
        )
    links = [("self", _link(req, criteria, count, offset))]
    if offset + count < total:
        links.append(("next", _link(req, criteria, count, offset + count)))
    if offset > 0:
        links.append(("previous", _link(req, criteria, count, max(0, offset - count))))
    return bundle("searchset", entries, total=total, links=links)


def _link(req: SearchRequest, criteria: list[tuple[str, str]], count: int, offset: int) -> str:
    pairs = [*criteria, ("_count", str(count))]
    if offset:
        pairs.append(("_offset", str(offset)))
    return f"{req.base_url}/{req.res_type}?{urlencode(pairs)}"
