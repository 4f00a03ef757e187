"""The booking path's view of forwarding (docs/forwarding.md): is this slot owned by a
remote vendor, and if so book or cancel it there first, turning the owner's answer into
what our client gets (``core.errors``). No database here: the caller records the booking
locally only after ``book`` returned, outside any transaction held during the call.

- the owner confirms: ``book`` returns the Appointment to store (its one identifier the key
  the owner knows it by, so a cancel can be forwarded too);
- the owner refuses (4xx): 409 with the owner's reason;
- no decision by the deadline: 504 when an attempt may have reached the owner without its
  answer reaching us (a timeout, a connection lost mid-answer: the owner may have booked;
  the same identifier again finds it), else 503 (refused connections, 5xx, 408, 429);
  nothing stored either way.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import orjson
import structlog

from fhir_server.booking.forward import (
    FhirJson,
    Owner,
    Owners,
    Refused,
    Unreachable,
    booking_key,
    cancel,
    create,
    for_owner,
)
from fhir_server.core.errors import FhirError, Issue, busy, conflict, unprocessable
from fhir_server.storage.port import Stored

log = structlog.get_logger(__name__)


class OwnerTimeout(FhirError):
    """The slot's owner gave no answer in time (504): its decision is unknown."""


def _failed(owner: Owner, doing: str, exc: Unreachable | Refused) -> FhirError:
    if isinstance(exc, Refused):
        return conflict(
            f"the slot's owner ({owner.name}) refused the {doing}: {exc.reason}",
            code="conflict",
        )
    said = (
        f"the slot's owner ({owner.name}) did not confirm the {doing} after "
        f"{exc.attempts} attempt(s): {exc.reason}; nothing was recorded"
    )
    if exc.uncertain:
        return OwnerTimeout(issues=[Issue("timeout", said)], status=504)
    error = busy(said, code="transient")
    error.headers["Retry-After"] = "30"
    return error


@dataclass(frozen=True)
class RemoteBooking:
    """The ``Forwarder`` of the booking path: the owners of pulled slots, and how long to
    try them (``Owners.limits``, from FHIR_FORWARD_*)."""

    owners: Owners

    def owner_of(self, slot: FhirJson) -> tuple[Owner, str] | None:
        return self.owners.of_slot(slot)

    async def book(self, slot: FhirJson, appointment: FhirJson) -> FhirJson | None:
        """None when ``slot`` is ours. Otherwise book it at its owner first and return the
        Appointment to record here (our content, identified by the key the owner knows);
        raises 409 / 503 / 504 (``core.errors``) when the owner does not confirm."""
        found = self.owner_of(slot)
        if found is None:
            return None
        owner, remote_slot = found
        key = booking_key(appointment)
        try:
            await create(owner, for_owner(appointment, remote_slot, key), key, self.owners.limits)
        except (Refused, Unreachable) as exc:
            if isinstance(exc, Unreachable) and exc.uncertain:
                # the owner may hold it: the client's retry with the same identifier finds
                # it; a generated key is only in this line, for the operator
                log.warning(
                    "forwarded booking outcome unknown",
                    owner=owner.name,
                    identifier=f"{key['system']}|{key['value']}",
                )
            raise _failed(owner, "booking", exc) from None
        local = copy.deepcopy(appointment)
        local["identifier"] = [key]
        return local

    async def cancel(self, slot: FhirJson, appointment: FhirJson) -> bool:
        """Cancel at the owner first (``PUT [base]/Appointment?identifier=``); False when
        ``slot`` is ours; raises like ``book`` when the owner does not confirm (the local
        appointment then stays as it is)."""
        found = self.owner_of(slot)
        if found is None:
            return False
        owner, remote_slot = found
        key = booking_key(appointment)
        body = for_owner(appointment, remote_slot, key) | {"status": "cancelled"}
        try:
            await cancel(owner, body, key, self.owners.limits)
        except (Refused, Unreachable) as exc:
            raise _failed(owner, "cancel", exc) from None
        return True

    async def undo(self, slot: FhirJson, appointment: FhirJson) -> None:
        """The owner confirmed but the local write failed: cancel it at the owner so the
        slot is not held there for nobody. Never raises; an undo that fails is logged
        (owner and identifier, no patient data) for the operator."""
        found = self.owner_of(slot)
        if found is None:
            return
        owner, remote_slot = found
        key = booking_key(appointment)
        body = for_owner(appointment, remote_slot, key) | {"status": "cancelled"}
        try:
            await cancel(owner, body, key, self.owners.limits)
        except (Refused, Unreachable) as exc:
            log.error(
                "forwarded booking left at its owner",
                owner=owner.name,
                identifier=f"{key['system']}|{key['value']}",
                reason=exc.reason,
            )
        else:
            log.warning(
                "forwarded booking cancelled at its owner: the local write failed",
                owner=owner.name,
                identifier=f"{key['system']}|{key['value']}",
            )

    async def forward(
        self,
        appointment: FhirJson | None,
        take: dict[str, Stored],
        leave: dict[str, Stored],
    ) -> None:
        """The booking path's hook (``booking.forwarding.Forwarder``), asked with the slots an
        Appointment write takes and leaves before they are written: returns when none is
        remote or the owner confirmed; raises (409/422/503/504) otherwise, and the write
        stores nothing. Taking remote slots: ``POST`` (or, when the appointment leaves other
        slots of the same owner, the ``PUT`` that moves it there); leaving them only
        (cancel, or moved to our slots): ``PUT`` ``cancelled``."""
        taking = self._remote(take)
        leaving = self._remote(leave)
        if not taking and not leaving:
            return
        if appointment is None:
            raise conflict(
                "this appointment holds a slot of a remote owner: cancel it "
                "(status=cancelled) so the owner learns of it, rather than delete it",
                code="business-rule",
            )
        if taking and len(taking) != len(take):
            raise unprocessable(
                "an Appointment cannot take slots of this server and of a remote owner",
                code="business-rule",
                expression=["Appointment.slot"],
            )
        owners = {owner for owner, _ in [*taking, *leaving]}
        if len({o for o, _ in taking}) > 1:
            raise unprocessable(
                "an Appointment cannot take slots of two remote owners",
                code="business-rule",
                expression=["Appointment.slot"],
            )
        key = _client_key(appointment)
        limits = self.owners.limits
        if taking:
            owner = taking[0][0]
            body = for_owner(appointment, [rid for _, rid in taking], key)
            moving = any(o == owner for o, _ in leaving)
            try:
                if moving:
                    await cancel(owner, body, key, limits)  # the SAS update moves it there
                else:
                    await create(owner, body, key, limits)
            except (Refused, Unreachable) as exc:
                raise _failed(owner, "booking", exc) from None
            owners.discard(owner)
        for owner in owners:  # slots left at other owners: cancelled there
            remote = [rid for o, rid in leaving if o == owner]
            body = for_owner(appointment, remote, key) | {"status": "cancelled"}
            try:
                await cancel(owner, body, key, limits)
            except (Refused, Unreachable) as exc:
                raise _failed(owner, "cancel", exc) from None

    def concerns(self, take: dict[str, Stored], leave: dict[str, Stored]) -> bool:
        """Whether any of these slots is remote: the identifiers of rows already read."""
        return bool(self._remote(take) or self._remote(leave))

    async def revert(
        self,
        appointment: FhirJson | None,
        take: dict[str, Stored],
        leave: dict[str, Stored],
    ) -> None:
        """``forward`` was confirmed but the local write failed: a new booking at the owner
        is cancelled there (the same PUT as ``undo``). A move or a cancel confirmed there
        cannot be put back safely: logged at ``error`` for the operator. Never raises."""
        taking = self._remote(take)
        leaving = self._remote(leave)
        if (not taking and not leaving) or appointment is None:
            return
        key = booking_key(appointment)
        token = f"{key['system']}|{key['value']}"
        owner = (taking or leaving)[0][0]
        if not taking or any(o == owner for o, _ in leaving):
            log.error(
                "forwarded booking left at its owner",
                owner=owner.name,
                identifier=token,
                reason="a cancel or a move confirmed by the owner; the local write failed",
            )
            return
        body = for_owner(appointment, [rid for _, rid in taking], key) | {"status": "cancelled"}
        try:
            await cancel(owner, body, key, self.owners.limits)
        except (Refused, Unreachable) as exc:
            log.error(
                "forwarded booking left at its owner",
                owner=owner.name,
                identifier=token,
                reason=exc.reason,
            )
        else:
            log.warning(
                "forwarded booking cancelled at its owner: the local write failed",
                owner=owner.name,
                identifier=token,
            )

    def _remote(self, slots: dict[str, Stored]) -> list[tuple[Owner, str]]:
        found = []
        for slot_id in sorted(slots):
            owned = self.owner_of(orjson.loads(slots[slot_id].content))
            if owned is not None:
                found.append(owned)
        return found


def _client_key(appointment: FhirJson) -> FhirJson:
    """The identifier the owner will know the booking by: the client's (FrAppointmentSAS
    requires one), so a cancel or a retry finds it; without one there is none to keep."""
    for identifier in appointment.get("identifier") or []:
        if isinstance(identifier, dict) and identifier.get("system") and identifier.get("value"):
            return {"system": identifier["system"], "value": identifier["value"]}
    raise unprocessable(
        "a booking of a slot of a remote owner needs Appointment.identifier (system and "
        "value): the owner knows the appointment by it",
        code="required",
        expression=["Appointment.identifier"],
    )
