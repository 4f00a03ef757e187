"""The booking rules: what an Appointment write does to the Slots it references. No I/O.

Statuses that hold their slots (the slot is ``busy`` while the Appointment has one):
``proposed``, ``pending``, ``booked``, ``arrived``, ``checked-in``, ``fulfilled`` and
``noshow`` (a proposal reserves the time until it is confirmed or cancelled; a fulfilled or
missed appointment keeps its slot: the time was used). ``cancelled``, ``entered-in-error``
and ``waitlist`` hold none: the slots they leave go back to ``free`` when their start is
still in the future (a past slot stays as it was: nobody can book it any more).

Errors (docs/booking.md): a slot that cannot be taken now (busy, busy-unavailable,
entered-in-error, unknown, deleted, started already) is a 409, a conflict with the server's
state that a retry on another slot can solve; an Appointment that contradicts its own slots
(times, two schedules, a gap) is a 422, wrong whatever the state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise
from typing import Any

from fhir_server.core import errors
from fhir_server.core.fhirtime import DateValueError, parse_instant

HOLDING = frozenset(
    {"proposed", "pending", "booked", "arrived", "checked-in", "fulfilled", "noshow"}
)


@dataclass(frozen=True)
class SlotState:
    """What the rules need of one stored Slot (None from the caller: unknown or deleted)."""

    res_id: str
    status: str
    schedule: str | None
    start: datetime
    end: datetime


@dataclass(frozen=True)
class Change:
    """The slots an Appointment write takes (``free`` -> ``busy``) and leaves."""

    take: tuple[str, ...]
    leave: tuple[str, ...]

    @property
    def empty(self) -> bool:
        return not self.take and not self.leave


def slot_ids(appointment: dict[str, Any] | None) -> tuple[str, ...]:
    """The ids of the Slots an Appointment references (``Slot/<id>``), in order, once each;
    a reference to anything else is a 422."""
    if appointment is None:
        return ()
    out: list[str] = []
    for i, ref in enumerate(appointment.get("slot") or ()):
        text = ref.get("reference") if isinstance(ref, dict) else None
        res_type, _, res_id = (text or "").rpartition("/")
        if not isinstance(text, str) or not res_type.endswith("Slot") or not res_id:
            raise errors.unprocessable(
                f"Appointment.slot[{i}] must reference a Slot (Slot/<id>)",
                code="invalid",
                expression=[f"Appointment.slot[{i}]"],
            )
        if res_id not in out:
            out.append(res_id)
    return tuple(out)


def holds(appointment: dict[str, Any] | None) -> bool:
    return appointment is not None and appointment.get("status") in HOLDING


def held(appointment: dict[str, Any] | None) -> tuple[str, ...]:
    """The slots an Appointment version keeps busy."""
    return slot_ids(appointment) if holds(appointment) else ()


def change(before: dict[str, Any] | None, after: dict[str, Any] | None) -> Change:
    """Which slots a write from ``before`` to ``after`` (None: absent/deleted) takes and
    leaves. A reschedule takes the new ones and leaves the old ones in the same write."""
    old, new = held(before), held(after)
    return Change(
        take=tuple(s for s in new if s not in old), leave=tuple(s for s in old if s not in new)
    )


def check_takeable(slot_id: str, slot: SlotState | None, now: datetime) -> None:
    """409 unless the slot can be taken now."""
    if slot is None:
        raise errors.conflict(
            f"Slot/{slot_id} does not exist (unknown or deleted): it cannot be booked",
            code="not-found",
        )
    if slot.status != "free":
        raise errors.conflict(
            f"Slot/{slot_id} is {slot.status}, not free: it cannot be booked", code="conflict"
        )
    if slot.start <= now:
        raise errors.conflict(
            f"Slot/{slot_id} started already ({slot.start.isoformat()}): it cannot be booked",
            code="business-rule",
        )


def check_fits(appointment: dict[str, Any], slots: Sequence[SlotState]) -> None:
    """422 unless the slots share one Schedule, follow each other without gap, and the
    Appointment's start/end (when given) are the first slot's start and the last one's end."""
    if not slots:
        return
    schedules = {s.schedule for s in slots}
    if len(schedules) > 1:
        raise errors.unprocessable(
            "the Appointment's slots belong to different Schedules (practitioners):"
            " one appointment is with one agenda",
            code="business-rule",
            expression=["Appointment.slot"],
        )
    ordered = sorted(slots, key=lambda s: s.start)
    for a, b in pairwise(ordered):
        if a.end != b.start:
            raise errors.unprocessable(
                f"the Appointment's slots are not contiguous (Slot/{a.res_id} ends at"
                f" {a.end.isoformat()}, Slot/{b.res_id} starts at {b.start.isoformat()})",
                code="business-rule",
                expression=["Appointment.slot"],
            )
    for field, want in (("start", ordered[0].start), ("end", ordered[-1].end)):
        given = appointment.get(field)
        if given is None:
            continue
        try:
            moment = parse_instant(given) if isinstance(given, str) else None
        except DateValueError:
            moment = None
        if moment != want:
            raise errors.unprocessable(
                f"Appointment.{field} {given!r} disagrees with its slots"
                f" ({field} {want.isoformat()})",
                code="business-rule",
                expression=[f"Appointment.{field}"],
            )


def slot_state(slot_id: str, content: dict[str, Any]) -> SlotState:
    """A stored Slot's state (its start/end are required instants in R4)."""
    schedule = (content.get("schedule") or {}).get("reference")
    return SlotState(
        res_id=slot_id,
        status=str(content.get("status")),
        schedule=schedule if isinstance(schedule, str) else None,
        start=parse_instant(content["start"]),
        end=parse_instant(content["end"]),
    )


def frees(slot: SlotState, now: datetime) -> bool:
    """Whether a slot left by an Appointment goes back to ``free``: it is ``busy`` (the
    booking made it so) and has not started yet."""
    return slot.status == "busy" and slot.start > now
