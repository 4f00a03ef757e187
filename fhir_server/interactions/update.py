"""update and conditional update: https://hl7.org/fhir/R4/http.html#update and #cond-update.

PUT with an id the server does not know creates the resource with that id
(update-as-create). ``PUT Type?query``: no match creates, one match updates it, several
fail with 412; the condition, not the body's id, names the resource
(``conditional.update_target``). ``If-Match`` must name the current version.
"""

from __future__ import annotations

from typing import Any

from fhir_server.core import errors
from fhir_server.interactions import access, owner_first
from fhir_server.interactions._resource import (
    check_body,
    check_id,
    check_if_match,
    check_type,
    write_version,
)
from fhir_server.interactions.conditional import update_target
from fhir_server.interactions.context import Context
from fhir_server.interactions.create import WriteResult
from fhir_server.interactions.references import PendingReferences
from fhir_server.storage.port import WriteSession


async def update_in(
    ctx: Context,
    session: WriteSession,
    res_type: str,
    res_id: str,
    body: Any,
    *,
    if_match: str | None = None,
    references: PendingReferences | None = None,
) -> WriteResult:
    check_type(res_type)
    check_id(res_id)
    access.require(ctx, "update", res_type)
    resource = check_body(res_type, body, ctx.validator)
    body_id = resource.get("id")
    if body_id is None:
        raise errors.incorrect(
            "the resource in a PUT body must carry its id", code="required", expression=["id"]
        )
    if body_id != res_id:
        raise errors.incorrect(
            f"the body's id {body_id!r} does not match the URL's id {res_id!r}",
            expression=[f"{res_type}.id"],
        )
    previous = await session.current(res_type, res_id)
    check_if_match(if_match, previous, f"{res_type}/{res_id}")
    for attempt in range(2):
        try:
            stored = await write_version(
                ctx,
                session,
                resource,
                res_type=res_type,
                res_id=res_id,
                previous=previous,
                method="PUT",
                references=references,
            )
            break
        except errors.Conflict:
            if previous is not None or attempt == 1:
                raise
            # Another request created this id meanwhile (it has committed): update its version.
            previous = await session.current(res_type, res_id)
            if previous is None:
                raise
            check_if_match(if_match, previous, f"{res_type}/{res_id}")
    return WriteResult(stored, created=previous is None or previous.deleted)


async def update(
    ctx: Context, res_type: str, res_id: str, body: Any, *, if_match: str | None = None
) -> WriteResult:
    async def write(ctx: Context) -> WriteResult:
        async with ctx.store.writing(ctx.caller) as session:
            return await update_in(ctx, session, res_type, res_id, body, if_match=if_match)

    return await owner_first.run(ctx, write)


async def conditional_update_in(
    ctx: Context,
    session: WriteSession,
    res_type: str,
    query: str,
    body: Any,
    *,
    if_match: str | None = None,
) -> WriteResult:
    check_type(res_type)
    access.require(ctx, "update", res_type)
    resource = check_body(res_type, body, ctx.validator)
    target = await update_target(ctx, session, res_type, query, resource.get("id"))
    resource = {**resource, "id": target.res_id}
    if target.matched:
        return await update_in(ctx, session, res_type, target.res_id, resource, if_match=if_match)
    check_id(target.res_id)
    stored = await write_version(
        ctx, session, resource, res_type=res_type, res_id=target.res_id, previous=None, method="PUT"
    )
    return WriteResult(stored, created=True)


async def conditional_update(
    ctx: Context, res_type: str, query: str, body: Any, *, if_match: str | None = None
) -> WriteResult:
    async def write(ctx: Context) -> WriteResult:
        async with ctx.store.writing(ctx.caller) as session:
            return await conditional_update_in(
                ctx, session, res_type, query, body, if_match=if_match
            )

    return await owner_first.run(ctx, write)
