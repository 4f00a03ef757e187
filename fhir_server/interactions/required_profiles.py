"""Profiles a write must claim, per resource type and client role (``FHIR_REQUIRED_PROFILES``).

A deployment can require, for example, that a vendor's Slots be SAS aggregator Slots
(``{"vendor": {"Slot": ["http://sas.fr/fhir/StructureDefinition/FrSlotAgregateur"]}}``);
``"*"`` applies to every role. The resource must name each required profile in
``meta.profile``: profile validation (``_resource.check_profiles``) then checks it against
every profile it claims, so a required profile is both claimed and satisfied. Checked on
every write that stores a resource (create, update, conditional update, patch and the same
entries of a transaction), in ``_resource.write_version``.
"""

from __future__ import annotations

from typing import Any

from fhir_server.core import errors
from fhir_server.core.errors import Issue
from fhir_server.core.roles import ANY_ROLE
from fhir_server.interactions.context import Context


def required_for(ctx: Context, res_type: str) -> list[str]:
    """The profiles a write of ``res_type`` by the context's client must claim."""
    out: list[str] = []
    for role in (ANY_ROLE, ctx.role):
        for url in ctx.required_profiles.get(role, {}).get(res_type, ()):
            if url not in out:
                out.append(url)
    return out


def check_required_profiles(ctx: Context, res_type: str, resource: dict[str, Any]) -> None:
    """422 naming ``Type.meta.profile`` when a required profile is not claimed (or not known
    to the validator, which then could not check it)."""
    required = required_for(ctx, res_type)
    if not required:
        return
    meta = resource.get("meta")
    claimed = meta.get("profile") if isinstance(meta, dict) else None
    claimed = claimed if isinstance(claimed, list) else []
    issues = [
        Issue(
            "required",
            f"a {res_type} written by a client of role '{ctx.role}' must claim the profile "
            f"{url} in meta.profile",
            expression=(f"{res_type}.meta.profile",),
        )
        for url in required
        if url not in claimed
    ]
    if ctx.validator is not None:
        issues += [
            Issue(
                "not-supported",
                f"the required profile {url} is not known to this server: install its package",
                expression=(f"{res_type}.meta.profile",),
            )
            for url in required
            if url in claimed and ctx.validator.profile(url) is None
        ]
    if issues:
        raise errors.unprocessable_issues(issues)
