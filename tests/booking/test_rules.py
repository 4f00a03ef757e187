"""The booking rules alone (no database): which slots a write takes and leaves, and why it
is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from fhir_server.booking import rules
from fhir_server.core import errors

NOW = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)


def appointment(status: str, *slots: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Appointment",
        "status": status,
        "slot": [{"reference": f"Slot/{s}"} for s in slots],
        **extra,
    }


def state(res_id: str, hour: int, status: str = "free", schedule: str = "Schedule/a") -> Any:
    start = NOW.replace(hour=hour)
    return rules.SlotState(res_id, status, schedule, start, start + timedelta(minutes=30))


def test_a_booking_takes_its_slots() -> None:
    assert rules.change(None, appointment("booked", "a", "b")) == rules.Change(("a", "b"), ())


@pytest.mark.parametrize("status", ["cancelled", "entered-in-error", "waitlist"])
def test_statuses_that_hold_no_slot_leave_them(status: str) -> None:
    before = appointment("booked", "a")
    assert rules.change(before, appointment(status, "a")) == rules.Change((), ("a",))
    assert rules.change(None, appointment(status, "a")).empty


@pytest.mark.parametrize("status", ["fulfilled", "noshow", "arrived", "checked-in", "booked"])
def test_the_time_used_keeps_its_slot(status: str) -> None:
    assert rules.change(appointment("booked", "a"), appointment(status, "a")).empty


def test_a_reschedule_takes_the_new_and_leaves_the_old() -> None:
    moved = rules.change(appointment("booked", "a", "b"), appointment("booked", "b", "c"))
    assert moved == rules.Change(("c",), ("a",))


def test_a_deletion_leaves_every_slot() -> None:
    assert rules.change(appointment("pending", "a"), None) == rules.Change((), ("a",))


def test_only_slot_references() -> None:
    assert rules.slot_ids(appointment("booked", "a", "a")) == ("a",)
    with pytest.raises(errors.Unprocessable):
        rules.slot_ids({"slot": [{"reference": "Schedule/x"}]})
    with pytest.raises(errors.Unprocessable):
        rules.slot_ids({"slot": [{"display": "no reference"}]})


@pytest.mark.parametrize(
    ("slot", "words"),
    [
        (None, "does not exist"),
        (state("a", 12, "busy"), "is busy"),
        (state("a", 12, "busy-unavailable"), "is busy-unavailable"),
        (state("a", 12, "entered-in-error"), "is entered-in-error"),
        (state("a", 9), "started already"),
        (state("a", 10), "started already"),
    ],
)
def test_what_cannot_be_taken_is_a_conflict(slot: Any, words: str) -> None:
    with pytest.raises(errors.Conflict) as raised:
        rules.check_takeable("a", slot, NOW)
    assert raised.value.status == 409
    assert words in raised.value.issues[0].diagnostics


def test_a_free_future_slot_can_be_taken() -> None:
    rules.check_takeable("a", state("a", 11), NOW)


def test_an_appointment_fits_its_slots() -> None:
    first = rules.SlotState(
        "a", "free", "Schedule/a", NOW.replace(hour=11, minute=30), NOW.replace(hour=12)
    )
    slots = [state("b", 12), first]  # any order in the Appointment
    # the same instants in another offset agree
    rules.check_fits({"start": "2026-12-07T12:30:00+01:00", "end": "2026-12-07T12:30:00Z"}, slots)
    rules.check_fits({}, slots)  # no times given: nothing to disagree with


@pytest.mark.parametrize(
    ("given", "slots", "words"),
    [
        ({"start": "2026-12-07T11:00:00Z"}, [state("a", 12)], "Appointment.start"),
        ({"end": "2026-12-07T12:00:00Z"}, [state("a", 12)], "Appointment.end"),
        ({"start": "not a time"}, [state("a", 12)], "Appointment.start"),
        ({}, [state("a", 12), state("b", 12, schedule="Schedule/b")], "different Schedules"),
        ({}, [state("a", 12), state("b", 14)], "not contiguous"),
    ],
)
def test_an_appointment_that_contradicts_its_slots_is_unprocessable(
    given: dict[str, Any], slots: list[Any], words: str
) -> None:
    with pytest.raises(errors.Unprocessable) as raised:
        rules.check_fits(given, slots)
    assert words in raised.value.issues[0].diagnostics


def test_only_a_busy_future_slot_is_freed() -> None:
    assert rules.frees(state("a", 12, "busy"), NOW)
    assert not rules.frees(state("a", 9, "busy"), NOW)
    assert not rules.frees(state("a", 12, "busy-unavailable"), NOW)
