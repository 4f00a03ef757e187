"""Resolve the search of a conditional interaction (If-None-Exist, PUT/DELETE Type?query),
and decide which resource a conditional update writes (``update_target``)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import parse_qsl

import structlog

from fhir_server.core import errors
from fhir_server.interactions.context import Context
from fhir_server.search.query.run import search_ids
from fhir_server.storage.port import ReadSession, WriteSession

log = structlog.get_logger(__name__)


def query_pairs(query: str) -> list[tuple[str, str]]:
    query = query.strip().lstrip("?")
    if "?" in query:  # "Patient?identifier=..." as sent in If-None-Exist by some clients
        query = query.split("?", 1)[1]
    pairs = parse_qsl(query, keep_blank_values=True)
    if not pairs:
        raise errors.incorrect("a conditional interaction needs search criteria", code="invalid")
    return pairs


async def matching_ids(
    ctx: Context,
    session: ReadSession,
    res_type: str,
    query: str,
    *,
    limit: int = 2,
    extra: Sequence[tuple[str, str]] = (),
) -> list[str]:
    """Ids matching the condition (at most ``limit``: callers only need 0, 1 or many)."""
    pairs = [*query_pairs(query), *extra, ("_count", str(limit))]
    ids, parsed = await search_ids(session, ctx.registry, res_type, pairs, default_tz=ctx.timezone)
    if parsed.unknown:
        # An ignored criterion would widen the match: refuse rather than guess.
        raise errors.incorrect(
            f"unknown search parameter(s) in the condition: {', '.join(parsed.unknown)}",
            code="not-supported",
        )
    return ids


async def conditional_matches(
    ctx: Context, session: ReadSession, res_type: str, query: str
) -> list[str]:
    """The matches of a conditional create or update (0, 1, or 2 meaning several).

    For a type of ``FHIR_UNIQUE_IDENTIFIERS``, several matches of which exactly one is active
    resolve to that one: once an identifier was re-attributed (its old holder deactivated),
    ``Type?identifier=`` still names its one active holder (``unique_identifiers``)."""
    ids = await matching_ids(ctx, session, res_type, query)
    if (
        len(ids) > 1
        and res_type in ctx.unique_identifiers
        and ctx.registry.get(res_type, "active") is not None
    ):
        active = await matching_ids(ctx, session, res_type, query, extra=[("active:not", "false")])
        if len(active) == 1:
            return active
    return ids


@dataclass(frozen=True)
class Target:
    """The resource a conditional update writes: ``matched`` (update it) or a new one."""

    res_id: str
    matched: bool


async def update_target(
    ctx: Context, session: WriteSession, res_type: str, query: str, body_id: object
) -> Target:
    """``PUT Type?query``: the one match, else a new resource (several matches: 412).

    The condition, not the body's id, names the resource. A body id that is not the matched
    resource's id is ignored (logged), and so is one that belongs to another resource when
    nothing matches (a new id is assigned, as a create does): the SAS platform sends the same
    ``id`` in every regulator account it writes. A body id that is free names the created
    resource (update as create). ``ctx.strict_conditional_ids`` keeps the R4 answers
    instead: 400 and 409."""
    await session.lock_conditional(res_type)
    ids = await conditional_matches(ctx, session, res_type, query)
    if len(ids) > 1:
        raise errors.precondition_failed(
            f"conditional update '{query}' matches several {res_type} resources",
            code="multiple-matches",
        )
    if ids:
        if body_id is not None and body_id != ids[0]:
            if ctx.strict_conditional_ids:
                raise errors.incorrect(
                    f"the body's id {body_id!r} is not the id of the matching resource {ids[0]!r}",
                    expression=[f"{res_type}.id"],
                )
            log.warning(
                "conditional update: body id ignored",
                res_type=res_type,
                body_id=body_id,
                matched=ids[0],
            )
        return Target(ids[0], matched=True)
    if isinstance(body_id, str):
        if await session.current(res_type, body_id) is None:
            return Target(body_id, matched=False)
        if ctx.strict_conditional_ids:
            raise errors.conflict(
                f"{res_type}/{body_id} exists but does not match the condition '{query}'"
            )
        log.warning(
            "conditional update: body id belongs to another resource, new id assigned",
            res_type=res_type,
            body_id=body_id,
        )
    return Target(str(uuid.uuid4()), matched=False)
