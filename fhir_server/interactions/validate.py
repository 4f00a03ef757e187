"""$validate at type and instance level: https://hl7.org/fhir/R4/resource-operation-validate.html.

The answer is always 200 with an OperationOutcome listing every issue (base R4 structure,
then the profiles the resource claims and the ``profile`` asked for); an empty list is one
informational issue. ``mode=delete`` checks only that the instance exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fhir_server.core import errors
from fhir_server.core.errors import Issue
from fhir_server.interactions import access
from fhir_server.interactions._resource import check_id, check_type
from fhir_server.interactions.context import Context
from fhir_server.validation.structure import structure_issues

MODES = ("create", "update", "delete")


@dataclass(frozen=True)
class ValidateRequest:
    res_type: str
    body: Any
    res_id: str | None = None
    mode: str | None = None
    profile: str | None = None
    lang: str = "en"


def _unwrap(req: ValidateRequest) -> tuple[Any, str | None, str | None]:
    """The resource, mode and profile, from a Parameters body or a bare resource."""
    body, mode, profile = req.body, req.mode, req.profile
    if isinstance(body, dict) and body.get("resourceType") == "Parameters":
        resource = None
        params = body.get("parameter", [])
        if not isinstance(params, list):
            raise errors.incorrect(
                "Parameters.parameter must be an array",
                code="structure",
                expression=["Parameters.parameter"],
            )
        for param in params:
            name = param.get("name") if isinstance(param, dict) else None
            if name == "resource":
                resource = param.get("resource")
            elif name == "mode":
                mode = param.get("valueCode", mode)
            elif name == "profile":
                profile = param.get("valueUri", param.get("valueCanonical", profile))
        body = resource
    return body, mode, profile


async def validate(ctx: Context, req: ValidateRequest) -> list[Issue]:
    check_type(req.res_type)
    access.require(ctx, "operation", req.res_type)
    if req.res_id is not None:
        check_id(req.res_id)
    resource, mode, profile = _unwrap(req)
    if profile is not None and not isinstance(profile, str):
        raise errors.incorrect("profile must be a canonical URL", expression=["profile"])
    if mode is not None and mode not in MODES:
        raise errors.incorrect(f"mode must be one of {', '.join(MODES)}", expression=["mode"])
    if mode == "delete":
        if req.res_id is None:
            raise errors.incorrect("mode=delete needs an instance: [type]/[id]/$validate")
        current = await ctx.store.read(req.res_type, req.res_id, ctx.caller)
        if current is None or current.deleted:
            raise errors.not_found(f"{req.res_type}/{req.res_id} is not known")
        return [Issue("informational", "the resource can be deleted", "information")]
    if not isinstance(resource, dict):
        raise errors.incorrect("no resource to validate", code="required", expression=["resource"])
    if resource.get("resourceType") != req.res_type:
        return [
            Issue(
                "invalid",
                f"resourceType {resource.get('resourceType')!r} is not {req.res_type!r}",
                expression=("resourceType",),
            )
        ]
    if mode == "update" and req.res_id is not None and resource.get("id") != req.res_id:
        return [Issue("invalid", f"the resource's id is not {req.res_id!r}", expression=("id",))]
    issues = structure_issues(resource)
    if not issues and ctx.validator is not None:
        issues = ctx.validator.validate(resource, [profile] if profile else [], lang=req.lang)
    elif not issues and profile:
        issues = [Issue("not-supported", "profile validation is off on this server", "warning")]
    return issues or [Issue("informational", "no issues", "information")]
