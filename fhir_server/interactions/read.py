"""read and vread: https://hl7.org/fhir/R4/http.html#read and #vread."""

from __future__ import annotations

from fhir_server.core import errors
from fhir_server.interactions import access
from fhir_server.interactions._resource import check_id, check_type
from fhir_server.interactions.context import Context
from fhir_server.storage.port import Stored


async def read(ctx: Context, res_type: str, res_id: str) -> Stored:
    check_type(res_type)
    check_id(res_id)
    access.require(ctx, "read", res_type)
    stored = await ctx.store.read(res_type, res_id, ctx.caller)
    if stored is None:
        raise errors.not_found(f"{res_type}/{res_id} is not known")
    if stored.deleted:
        raise errors.gone(f"{res_type}/{res_id} was deleted (version {stored.version})")
    return stored


async def vread(ctx: Context, res_type: str, res_id: str, version: str) -> Stored:
    check_type(res_type)
    check_id(res_id)
    if not version.isdigit():
        raise errors.not_found(f"{res_type}/{res_id} has no version {version!r}")
    access.require(ctx, "vread", res_type)
    stored = await ctx.store.vread(res_type, res_id, int(version), ctx.caller)
    if stored is None:
        raise errors.not_found(f"{res_type}/{res_id} has no version {version}")
    if stored.deleted:
        raise errors.gone(f"version {version} of {res_type}/{res_id} is a deletion")
    return stored
