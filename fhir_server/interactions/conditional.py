"""Resolve the search of a conditional interaction (If-None-Exist, PUT/DELETE Type?query)."""

from __future__ import annotations

from urllib.parse import parse_qsl

from fhir_server.core import errors
from fhir_server.interactions.context import Context
from fhir_server.search.plan import search_ids
from fhir_server.storage.port import ReadSession


def query_pairs(query: str) -> list[tuple[str, str]]:
    query = query.strip().lstrip("?")
    if "?" in query:  # "Patient?identifier=..." as sent in If-None-Exist by some clients
        query = query.split("?", 1)[1]
    pairs = parse_qsl(query, keep_blank_values=True)
    if not pairs:
        raise errors.incorrect("a conditional interaction needs search criteria", code="invalid")
    return pairs


async def matching_ids(
    ctx: Context, session: ReadSession, res_type: str, query: str, *, limit: int = 2
) -> list[str]:
    """Ids matching the condition (at most ``limit``: callers only need 0, 1 or many)."""
    pairs = [*query_pairs(query), ("_count", str(limit))]
    ids, parsed = await search_ids(session, ctx.registry, res_type, pairs, default_tz=ctx.timezone)
    if parsed.unknown:
        # An ignored criterion would widen the match: refuse rather than guess.
        raise errors.incorrect(
            f"unknown search parameter(s) in the condition: {', '.join(parsed.unknown)}",
            code="not-supported",
        )
    return ids
