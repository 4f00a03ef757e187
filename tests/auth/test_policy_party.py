"""The party rules of the access policy (pure): the owner of an Appointment's slots reads it
and changes its status and the practice's elements, nothing else; nobody else gains."""

from __future__ import annotations

from typing import Any

import pytest

from auth.policy import PARTY_STATUSES, Policy
from tests.auth.test_policy import ADMIN, PLATFORM, REGULATOR, VENDOR, Who

P = Policy()
VENDOR_B = Who("vendor", "agenda-b")
BOOKED: dict[str, Any] = {
    "resourceType": "Appointment",
    "id": "a1",
    "meta": {"versionId": "1", "lastUpdated": "2026-12-07T10:00:00Z", "profile": ["p"]},
    "status": "booked",
    "start": "2026-12-09T10:00:00Z",
    "end": "2026-12-09T10:20:00Z",
    "slot": [{"reference": "Slot/s1"}],
    "participant": [{"status": "accepted", "actor": {"reference": "Practitioner/p1"}}],
}


def change(after: dict[str, Any], who: Who = VENDOR, interaction: str = "update") -> Any:
    return P.may_change(
        who, interaction, "Appointment", "a1", "regulation-sw", "agenda-a", BOOKED, after
    )


def test_the_vendor_reads_the_appointments_it_is_party_to_only() -> None:
    scope = P.read_scope(VENDOR)
    assert scope.admits("Appointment", "regulation-sw", None, "agenda-a")
    assert not scope.admits("Appointment", "regulation-sw", None, "agenda-b")
    assert not scope.admits("Appointment", "regulation-sw", None, None)
    assert scope.admits("Appointment", "agenda-a", None, None)  # its own (INT_R03)
    # a party column on another type admits nothing (only Appointments have one)
    assert not scope.admits("Slot", "agenda-b", "|PUBLIC|", "agenda-a")
    assert not scope.whole_type("Appointment")
    # the others read every Appointment already; a Subscription stays its owner's
    assert P.read_scope(REGULATOR).admits("Appointment", "x", None, None)
    assert not P.read_scope(REGULATOR).admits("Subscription", "x", None, "regulation-sw")


@pytest.mark.parametrize("status", sorted(PARTY_STATUSES))
def test_the_party_sets_the_status(status: str) -> None:
    assert change({**BOOKED, "status": status})
    assert change({**BOOKED, "status": status}, interaction="patch")


def test_the_party_changes_the_practices_elements_and_may_omit_stamped_meta() -> None:
    after = {
        **BOOKED,
        "status": "cancelled",
        "cancelationReason": {"text": "patient"},
        "comment": "appelé",
        "participant": [{**BOOKED["participant"][0], "status": "declined"}],
        "meta": {"profile": ["p"]},
    }
    assert change(after)


@pytest.mark.parametrize(
    ("after", "element"),
    [
        ({"start": "2026-12-09T11:00:00Z"}, "Appointment.start"),
        ({"slot": [{"reference": "Slot/s2"}]}, "Appointment.slot"),
        ({"status": "proposed"}, "Appointment.status"),
        ({"status": "entered-in-error"}, "Appointment.status"),
        ({"participant": [{"status": "accepted"}]}, "Appointment.participant"),
        ({"meta": {"profile": ["q"]}}, "Appointment.meta"),
        ({"identifier": [{"value": "x"}]}, "Appointment.identifier"),
    ],
)
def test_anything_else_is_refused_naming_the_element(after: dict[str, Any], element: str) -> None:
    decision = change({**BOOKED, **after})
    assert not decision
    assert decision.element == element
    assert "Appointment/a1" in decision.reason


def test_a_removed_element_is_a_change_too() -> None:
    after = {k: v for k, v in BOOKED.items() if k != "end"}
    assert change(after).element == "Appointment.end"


def test_the_party_never_deletes_nor_acts_without_the_content() -> None:
    assert not change(BOOKED, interaction="delete")  # no vendor deletes an Appointment
    refused = P.may_change(VENDOR, "update", "Appointment", "a1", "reg", "agenda-a")
    assert not refused and "only updates its status" in refused.reason


def test_nobody_else_gains_anything() -> None:
    assert not change({**BOOKED, "status": "cancelled"}, who=VENDOR_B)
    # the party rule is for Appointments only
    assert not P.may_change(VENDOR, "update", "Slot", "s1", "agenda-b", "agenda-a", {}, {})
    # the owner and admin change everything, as before
    assert P.may_change(REGULATOR, "update", "Appointment", "a1", "regulation-sw", "agenda-a")
    assert P.may_change(ADMIN, "update", "Appointment", "a1", "regulation-sw", "agenda-a")
    assert not P.may_change(PLATFORM, "update", "Appointment", "a1", "regulation-sw", "x")


def test_the_generated_table_names_the_party() -> None:
    table = P.table()
    assert "| Appointment | own, party | own, party |" in table
    assert "**party**" in table
