"""The access policy applied to the interactions: one call before each, one before each write.

The decisions are ``auth/policy.py``'s (``ctx.policy``, the store's own object); this module
only turns a refusal into a 403 OperationOutcome naming role, interaction and type (or the
missing scope), and stamps what a write records for later decisions: the owner and a
Slot's labels (an Appointment's party is the booking's: ``slot_booking.apply``). Reads are
limited where rows are selected (``storage``, ``visible``), so an invisible resource is
simply absent (404 on read: its existence is not revealed).
"""

from __future__ import annotations

from typing import Any

import orjson
import structlog

from auth.policy import slot_labels
from fhir_server.core import errors
from fhir_server.core.caller import SYSTEM
from fhir_server.interactions.context import Context
from fhir_server.storage.port import Stored

log = structlog.get_logger(__name__)


def require(ctx: Context, interaction: str, res_type: str) -> None:
    """403 unless the caller may do ``interaction`` on ``res_type`` at all."""
    if ctx.caller is SYSTEM:
        return
    decision = ctx.policy.may(ctx.caller, interaction, res_type)
    if not decision:
        _refuse(ctx, interaction, res_type, decision.reason)


def require_change(
    ctx: Context,
    interaction: str,
    res_type: str,
    previous: Stored | None,
    resource: dict[str, Any] | None = None,
    *,
    unpatched: bool = False,
) -> None:
    """403 unless the caller may write ``res_type`` and, for a stored resource, owns it or
    is its party and changes only what a party may (``resource``: the new content;
    ``unpatched``: a patch not applied yet, its content checked when written)."""
    if ctx.caller is SYSTEM:
        return
    if previous is None:
        require(ctx, "create" if interaction != "delete" else interaction, res_type)
        return
    # A deleted resource's id stays its owner's: nobody else recreates it.
    # the content matters only to a party's change (parsed for the rows that have one)
    party = previous.party
    before = None if party is None or previous.deleted else orjson.loads(previous.content)
    decision = ctx.policy.may_change(
        ctx.caller,
        interaction,
        res_type,
        previous.res_id,
        previous.owner,
        party=party,
        before=before,
        after=before if unpatched else resource,
    )
    if not decision:
        _refuse(ctx, interaction, res_type, decision.reason, decision.element)


def is_party(ctx: Context, previous: Stored | None) -> bool:
    """Whether the caller changes ``previous`` as its party (its slots' owner), not its
    owner: its status changes take and leave slots as a booking's do."""
    if ctx.caller is SYSTEM or previous is None or previous.party is None:
        return False
    me = ctx.policy.owner_of(ctx.caller)
    return previous.party == me and previous.owner != me


def owner_for(ctx: Context, previous: Stored | None) -> str | None:
    """The owner a new version records: the first writer's, kept by later versions, a
    deletion and a re-creation included (an admin's correction does not take a vendor's
    resource); None for the server's own."""
    if previous is not None:
        return previous.owner
    if ctx.caller is SYSTEM:
        return None
    return ctx.policy.owner_of(ctx.caller)


def labels_of(resource: dict[str, Any] | None, previous: Stored | None) -> str | None:
    if resource is None:  # a deletion keeps the labels of the version it deletes
        return previous.labels if previous is not None else None
    return slot_labels(resource)


def visible_row(ctx: Context, stored: Stored) -> bool:
    """Whether a row read by a write session (which reads every row) may be shown."""
    if ctx.caller is SYSTEM:
        return True
    scope = ctx.policy.read_scope(ctx.caller)
    return scope.admits(stored.res_type, stored.owner, stored.labels, stored.party)


def _refuse(
    ctx: Context, interaction: str, res_type: str, reason: str, element: str | None = None
) -> None:
    # No ids of people in the log: the role and the client are enough to follow it up.
    log.info(
        "access refused",
        role=ctx.caller.role,
        client=ctx.caller.client_id,
        interaction=interaction,
        res_type=res_type,
    )
    where = [element] if element else []
    raise errors.forbidden(f"forbidden: {reason}", code="forbidden", expression=where)
