"""Shared steps of the write interactions: check a body, stamp it, write a version."""

from __future__ import annotations

from typing import Any

import orjson

from fhir_server.core import errors
from fhir_server.core.fhirtime import format_instant, utcnow
from fhir_server.core.types import is_served, is_valid_id
from fhir_server.interactions import access, slot_booking
from fhir_server.interactions.context import Context
from fhir_server.interactions.references import PendingReferences
from fhir_server.interactions.required_profiles import check_required_profiles
from fhir_server.interactions.unique_identifiers import check_unique_identifiers
from fhir_server.search.indexing.indexer import index_resource
from fhir_server.storage.port import Stored, WriteSession
from fhir_server.validation.structure import structure_issues
from fhir_server.validation.validator import Validator


def check_type(res_type: str) -> None:
    if not is_served(res_type):
        raise errors.not_found(
            f"resource type {res_type!r} is not supported by this server", code="not-supported"
        )


def check_id(res_id: str) -> None:
    if not is_valid_id(res_id):
        raise errors.incorrect(
            f"invalid resource id {res_id!r}: 1-64 characters among A-Z a-z 0-9 - .",
            expression=["id"],
        )


def check_body(res_type: str, body: Any, validator: Validator | None = None) -> dict[str, Any]:
    """The body must be a valid R4 resource of ``res_type`` (400 otherwise) and satisfy the
    profiles it claims (422 with every issue otherwise; warnings never block)."""
    if not isinstance(body, dict):
        raise errors.incorrect("the body must be a JSON object (a FHIR resource)", code="structure")
    actual = body.get("resourceType")
    if actual != res_type:
        raise errors.incorrect(
            f"resourceType {actual!r} does not match the URL's type {res_type!r}",
            code="invalid",
            expression=["resourceType"],
        )
    issues = structure_issues(body)
    if issues:
        raise errors.incorrect_issues(issues)
    check_profiles(body, validator)
    return body


def check_profiles(resource: dict[str, Any], validator: Validator | None) -> None:
    if validator is None:
        return
    issues = validator.validate(resource)
    if any(i.severity in ("error", "fatal") for i in issues):
        raise errors.unprocessable_issues(issues)


def stamp(resource: dict[str, Any], res_id: str, version: int, now_text: str) -> bytes:
    """Set id and meta.versionId/lastUpdated, keeping the client's element order."""
    meta = dict(resource.get("meta") or {})
    meta["versionId"] = str(version)
    meta["lastUpdated"] = now_text
    out: dict[str, Any] = {"resourceType": resource["resourceType"], "id": res_id, "meta": meta}
    for key, value in resource.items():
        if key not in out:
            out[key] = value
    return orjson.dumps(out)


# the access policy's interaction for each write method
_INTERACTIONS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


async def write_version(
    ctx: Context,
    session: WriteSession,
    resource: dict[str, Any] | None,
    *,
    res_type: str,
    res_id: str,
    previous: Stored | None,
    method: str,
    references: PendingReferences | None = None,
) -> Stored:
    """Write the next version (``resource`` None = delete) with its index rows.

    Every write that stores a resource passes here, so the rules that depend on who writes
    or on the other stored resources are checked here: the profiles the client's role
    requires, identifier uniqueness and referential integrity (``references.py``). The
    references are checked now, unless the caller collects them in ``references`` to check
    a whole unit (a transaction) at its end. The access policy is checked first: the
    caller may write this type, and a stored resource only if it owns it, or is the party
    of an Appointment changing its status (403)."""
    access.require_change(ctx, _INTERACTIONS[method], res_type, previous, resource)
    if resource is not None and res_type == "Subscription" and ctx.subscription_rules:
        before = orjson.loads(previous.content) if previous and not previous.deleted else None
        resource = ctx.subscription_rules.accept(ctx.caller, resource, before)
    if resource is not None:
        check_required_profiles(ctx, res_type, resource)
        await check_unique_identifiers(ctx, session, res_type, res_id, resource)
    party = None
    if res_type == "Appointment":
        # takes and leaves its slots in this transaction (409/422 before anything is written);
        # its party is their owner
        party = await slot_booking.apply(ctx, session, resource, previous)
    now = utcnow()
    version = (previous.version + 1) if previous else 1
    if resource is None:
        content = previous.content if previous else b"{}"
        index: dict[str, list[dict[str, Any]]] = {}
        deleted = True
    else:
        content = stamp(resource, res_id, version, format_instant(now, ctx.timezone))
        index = index_resource(ctx.registry, orjson.loads(content))
        deleted = False
    stored = Stored(
        res_type=res_type,
        res_id=res_id,
        version=version,
        last_updated=now,
        deleted=deleted,
        content=content,
        method=method,
        owner=access.owner_for(ctx, previous),
        labels=access.labels_of(resource, previous),
        party=party,
    )
    await session.put(stored, index, previous)
    for hook in ctx.write_hooks:  # the outboxes: their rows commit with this version
        await hook.wrote(session, stored, previous)
    if ctx.referential_integrity:
        # After ``put``: a resource may reference itself.
        pending = references if references is not None else PendingReferences()
        pending.wrote(res_type, res_id, resource)
        if references is None:
            await pending.verify(session)
    return stored


def check_if_match(if_match: str | None, current: Stored | None, what: str) -> None:
    """``If-Match: W/"n"``: 412 when the current version differs (or there is none)."""
    if if_match is None:
        return
    wanted = if_match.strip().removeprefix("W/").strip('"')
    if current is None or current.deleted:
        raise errors.precondition_failed(f"If-Match {if_match}: {what} does not exist")
    if wanted != str(current.version):
        raise errors.precondition_failed(
            f"If-Match {if_match} does not match the current version {current.version} of {what}",
            code="conflict",
        )
