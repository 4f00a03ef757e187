"""delete and conditional delete: https://hl7.org/fhir/R4/http.html#delete.

Deleting an unknown or already deleted resource succeeds (the spec allows 200/204 for it).
A conditional delete deletes its single match; several matches fail with 412.
"""

from __future__ import annotations

from fhir_server.core import errors
from fhir_server.interactions import access, owner_first
from fhir_server.interactions._resource import check_id, check_if_match, check_type, write_version
from fhir_server.interactions.conditional import matching_ids
from fhir_server.interactions.context import Context
from fhir_server.interactions.references import PendingReferences
from fhir_server.storage.port import Stored, WriteSession


async def delete_in(
    ctx: Context,
    session: WriteSession,
    res_type: str,
    res_id: str,
    *,
    if_match: str | None = None,
    references: PendingReferences | None = None,
) -> Stored | None:
    """Returns the deletion version, or None when there was nothing to delete. Deleting a
    resource other resources reference is allowed (``references.py``)."""
    check_type(res_type)
    check_id(res_id)
    access.require(ctx, "delete", res_type)
    current = await session.current(res_type, res_id)
    check_if_match(if_match, current, f"{res_type}/{res_id}")
    if current is None or current.deleted:
        return None
    return await write_version(
        ctx,
        session,
        None,
        res_type=res_type,
        res_id=res_id,
        previous=current,
        method="DELETE",
        references=references,
    )


async def delete(
    ctx: Context, res_type: str, res_id: str, *, if_match: str | None = None
) -> Stored | None:
    async def write(ctx: Context) -> Stored | None:
        async with ctx.store.writing(ctx.caller) as session:
            return await delete_in(ctx, session, res_type, res_id, if_match=if_match)

    return await owner_first.run(ctx, write)


async def conditional_delete_in(
    ctx: Context,
    session: WriteSession,
    res_type: str,
    query: str,
    *,
    references: PendingReferences | None = None,
) -> Stored | None:
    check_type(res_type)
    access.require(ctx, "delete", res_type)
    await session.lock_conditional(res_type)
    ids = await matching_ids(ctx, session, res_type, query)
    if len(ids) > 1:
        raise errors.precondition_failed(
            f"conditional delete '{query}' matches several {res_type} resources",
            code="multiple-matches",
        )
    if not ids:
        return None
    return await delete_in(ctx, session, res_type, ids[0], references=references)


async def conditional_delete(ctx: Context, res_type: str, query: str) -> Stored | None:
    async def write(ctx: Context) -> Stored | None:
        async with ctx.store.writing(ctx.caller) as session:
            return await conditional_delete_in(ctx, session, res_type, query)

    return await owner_first.run(ctx, write)
