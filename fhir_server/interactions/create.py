"""create and conditional create: https://hl7.org/fhir/R4/http.html#create.

The server assigns the id (a client id in the body is ignored, as the spec says).
With ``If-None-Exist``: no match creates, one match returns it untouched (200),
several matches fail with 412.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from fhir_server.core import errors
from fhir_server.interactions import access, idempotency, owner_first
from fhir_server.interactions._resource import check_body, check_type, write_version
from fhir_server.interactions.conditional import conditional_matches
from fhir_server.interactions.context import Context
from fhir_server.interactions.references import PendingReferences
from fhir_server.storage.port import Stored, WriteSession


@dataclass(frozen=True)
class WriteResult:
    stored: Stored
    created: bool
    replayed: bool = False  # the first result of a retried Idempotency-Key


async def create_in(
    ctx: Context,
    session: WriteSession,
    res_type: str,
    body: Any,
    *,
    if_none_exist: str | None = None,
    res_id: str | None = None,
    references: PendingReferences | None = None,
) -> WriteResult:
    """Create inside an open write session (used directly by transactions; ``references``:
    see ``write_version``)."""
    check_type(res_type)
    access.require(ctx, "create", res_type)
    resource = check_body(res_type, body, ctx.validator)
    if if_none_exist:
        await session.lock_conditional(res_type)
        ids = await conditional_matches(ctx, session, res_type, if_none_exist)
        if len(ids) > 1:
            raise errors.precondition_failed(
                f"If-None-Exist '{if_none_exist}' matches several {res_type} resources",
                code="duplicate",
            )
        if ids:
            existing = await session.current(res_type, ids[0])
            assert existing is not None
            return WriteResult(existing, created=False)
    new_id = res_id or str(uuid.uuid4())
    stored = await write_version(
        ctx,
        session,
        resource,
        res_type=res_type,
        res_id=new_id,
        previous=None,
        method="POST",
        references=references,
    )
    return WriteResult(stored, created=True)


async def create(
    ctx: Context,
    res_type: str,
    body: Any,
    *,
    if_none_exist: str | None = None,
    idempotent: idempotency.IdempotentRequest | None = None,
) -> WriteResult:
    async def write(ctx: Context) -> WriteResult:
        return await _create(ctx, res_type, body, if_none_exist, idempotent)

    return await owner_first.run(ctx, write)


async def _create(
    ctx: Context,
    res_type: str,
    body: Any,
    if_none_exist: str | None,
    idempotent: idempotency.IdempotentRequest | None,
) -> WriteResult:
    async with ctx.store.writing(ctx.caller) as session:
        if idempotent is None:
            return await create_in(ctx, session, res_type, body, if_none_exist=if_none_exist)
        first = await idempotency.claim(ctx, session, idempotent)
        if first is None:
            result = await create_in(ctx, session, res_type, body, if_none_exist=if_none_exist)
            status = 201 if result.created else 200
            await idempotency.record(ctx, session, idempotent, status, result.stored)
            return result
    stored = await idempotency.replayed(ctx, first)
    return WriteResult(stored, created=first.status == 201, replayed=True)
