"""SMART v1 scopes: parsing, and what they grant."""

from __future__ import annotations

import pytest

from auth.scopes import Scope, granted, parse_scope, readable_types, smart_scopes


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("system/Slot.read", Scope("system", "Slot", "read")),
        ("user/Appointment.write", Scope("user", "Appointment", "write")),
        ("*/*.read", None),  # the context is never a wildcard in SMART v1
        ("user/*.*", Scope("user", "*", "*")),
        ("patient/Slot.read", Scope("patient", "Slot", "read")),
        ("openid", None),
        ("scope_all", None),
        ("system/Slot.search", None),  # v2's cruds letters are not v1
        ("system/slot.read", None),
        ("system/Slot.read ", None),
        ("", None),
    ],
)
def test_parse(text: str, parsed: Scope | None) -> None:
    assert parse_scope(text) == parsed
    if parsed is not None:
        assert str(parsed) == text


def test_what_scopes_grant() -> None:
    scopes = smart_scopes(["openid", "system/Slot.read", "user/Appointment.*", "system/Slot.read"])
    assert [str(s) for s in scopes] == ["system/Slot.read", "user/Appointment.*"]
    assert granted(scopes, "Slot", "read")
    assert not granted(scopes, "Slot", "write")
    assert granted(scopes, "Appointment", "write") and granted(scopes, "Appointment", "read")
    assert not granted(scopes, "Schedule", "read")
    everything = smart_scopes(["system/*.read"])
    assert granted(everything, "AuditEvent", "read") and not granted(everything, "Slot", "write")


def test_patient_scopes_grant_nothing() -> None:
    scopes = smart_scopes(["patient/*.*", "patient/Slot.read"])
    assert len(scopes) == 2
    assert not granted(scopes, "Slot", "read")
    assert readable_types(scopes, ["Slot", "Schedule"]) == frozenset()


def test_readable_types() -> None:
    scopes = smart_scopes(["system/Slot.read", "system/Schedule.write", "user/Practitioner.*"])
    assert readable_types(scopes, ["Slot", "Schedule", "Practitioner", "AuditEvent"]) == {
        "Slot",
        "Practitioner",
    }
