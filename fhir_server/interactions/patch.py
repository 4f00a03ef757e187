"""patch with JSON Patch (RFC 6902): https://hl7.org/fhir/R4/http.html#patch.

The patch is applied to the current version; the result must still be a valid resource of
the same type with the same id, otherwise 422 and nothing changes.
"""

from __future__ import annotations

from typing import Any

import jsonpatch
import orjson

from fhir_server.core import errors, json_input
from fhir_server.interactions import access, owner_first
from fhir_server.interactions._resource import (
    check_id,
    check_if_match,
    check_profiles,
    check_type,
    write_version,
)
from fhir_server.interactions.context import Context
from fhir_server.interactions.create import WriteResult
from fhir_server.interactions.references import PendingReferences
from fhir_server.storage.port import WriteSession
from fhir_server.validation.structure import structure_issues


def _apply(document: dict[str, Any], operations: Any) -> Any:
    if not isinstance(operations, list) or not all(isinstance(op, dict) for op in operations):
        raise errors.incorrect(
            "a JSON Patch body is an array of operation objects", code="structure"
        )
    try:
        return jsonpatch.JsonPatch(operations).apply(document)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
        raise errors.unprocessable(
            f"the JSON Patch cannot be applied: {exc}", code="processing"
        ) from exc
    except (TypeError, KeyError, ValueError) as exc:
        raise errors.incorrect(f"malformed JSON Patch: {exc}", code="structure") from exc


async def patch_in(
    ctx: Context,
    session: WriteSession,
    res_type: str,
    res_id: str,
    operations: Any,
    *,
    if_match: str | None = None,
    references: PendingReferences | None = None,
    max_depth: int = json_input.MAX_DEPTH,
) -> WriteResult:
    check_type(res_type)
    check_id(res_id)
    access.require(ctx, "patch", res_type)
    current = await session.current(res_type, res_id)
    if current is not None and not current.deleted:
        # before the patch is applied (a party's change is checked once it is)
        access.require_change(ctx, "patch", res_type, current, unpatched=True)
    if current is None:
        raise errors.not_found(f"{res_type}/{res_id} is not known")
    if current.deleted:
        raise errors.gone(f"{res_type}/{res_id} was deleted")
    check_if_match(if_match, current, f"{res_type}/{res_id}")
    result = _apply(orjson.loads(current.content), operations)
    # Each patch may nest its values deeper: bound the result, not only the patch body.
    json_input.check_depth(result, max_depth, "the patched resource")
    if not isinstance(result, dict) or result.get("resourceType") != res_type:
        raise errors.unprocessable("the patch would change the resource type", code="invalid")
    if result.get("id") != res_id:
        raise errors.unprocessable("the patch would change the resource id", code="invalid")
    issues = structure_issues(result)
    if issues:
        raise errors.unprocessable_issues(issues)
    check_profiles(result, ctx.validator)
    stored = await write_version(
        ctx,
        session,
        result,
        res_type=res_type,
        res_id=res_id,
        previous=current,
        method="PATCH",
        references=references,
    )
    return WriteResult(stored, created=False)


async def patch(
    ctx: Context,
    res_type: str,
    res_id: str,
    operations: Any,
    *,
    if_match: str | None = None,
    max_depth: int = json_input.MAX_DEPTH,
) -> WriteResult:
    async def write(ctx: Context) -> WriteResult:
        async with ctx.store.writing(ctx.caller) as session:
            return await patch_in(
                ctx, session, res_type, res_id, operations, if_match=if_match, max_depth=max_depth
            )

    return await owner_first.run(ctx, write)
