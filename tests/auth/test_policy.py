"""The access policy's decisions (pure), and docs/policy.md generated from them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from auth import policy
from auth.policy import (
    DOC,
    EVERYTHING,
    INTERACTIONS,
    LABELS,
    READS,
    ROLES,
    TYPES,
    UNLABELLED,
    WRITES,
    Policy,
    label_set,
    slot_labels,
)


@dataclass(frozen=True)
class Who:
    role: str
    client_id: str | None = None
    user_id: str | None = None
    scopes: frozenset[str] = frozenset()


VENDOR = Who("vendor", "agenda-a")
REGULATOR = Who("regulator", "regulation-sw", "810009999999")
PLATFORM = Who("platform", "sas-platform")
ADMIN = Who("admin")
P = Policy()


def test_vendors_write_their_directory_and_slots_only() -> None:
    for res_type in ("Practitioner", "PractitionerRole", "Schedule", "Slot", "HealthcareService"):
        for interaction in ("create", "update", "patch", "delete", "read", "search"):
            assert P.may(VENDOR, interaction, res_type), (interaction, res_type)
    assert P.may(VENDOR, "create", "Appointment")  # INT_R03
    assert not P.may(VENDOR, "delete", "Appointment")
    assert not P.may(VENDOR, "read", "AuditEvent")
    assert not P.may(VENDOR, "create", "Endpoint")


def test_regulators_search_and_book() -> None:
    decision = P.may(REGULATOR, "create", "Slot")
    assert not decision
    assert decision.reason == "the regulator role may not create Slot resources"
    assert P.may(REGULATOR, "create", "Appointment")
    for res_type in set(TYPES) - {"AuditEvent"}:
        assert P.may(REGULATOR, "search", res_type)
    assert not P.may(REGULATOR, "search", "AuditEvent")


def test_the_platform_manages_regulator_accounts_and_receives_appointments() -> None:
    for res_type in ("Practitioner", "PractitionerRole", "Appointment"):
        assert P.may(PLATFORM, "create", res_type) and P.may(PLATFORM, "update", res_type)
    assert not P.may(PLATFORM, "create", "Slot")
    assert not P.may(PLATFORM, "read", "AuditEvent")
    assert P.may(ADMIN, "read", "AuditEvent")
    assert all(P.may(ADMIN, i, t) for i in READS for t in TYPES)
    assert all(P.may(ADMIN, i, t) for i in WRITES for t in TYPES if t != "AuditEvent")
    # AuditEvents are the server's own record: no role writes them, admin included
    assert not any(P.may(Who(role), i, "AuditEvent") for role in ROLES for i in WRITES)


def test_unknown_roles_and_interactions_are_refused() -> None:
    assert not P.may(Who("doctor"), "read", "Slot")
    assert P.read_scope(Who("doctor")).types == frozenset()
    assert P.may(ADMIN, "transmogrify", "Slot").reason == "unknown interaction 'transmogrify'"


def test_scopes_narrow_the_role() -> None:
    scoped = Who("platform", "sas-platform", scopes=frozenset({"openid", "system/Slot.read"}))
    assert P.may(scoped, "search", "Slot")
    refused = P.may(scoped, "search", "Practitioner")
    assert "system/Practitioner.read" in refused.reason
    writer = Who("platform", "sas-platform", scopes=frozenset({"system/*.write"}))
    assert P.may(writer, "create", "Practitioner")
    assert not P.may(writer, "create", "Slot")  # the role still decides
    assert not P.may(writer, "read", "Practitioner")
    assert P.read_scope(scoped).types == {"Slot"}
    # non-SMART scopes only: the role alone
    assert P.may(Who("platform", scopes=frozenset({"openid"})), "read", "Schedule")


def test_only_the_owner_or_admin_changes_a_stored_resource() -> None:
    assert P.may_change(VENDOR, "update", "Slot", "s1", "agenda-a")
    refused = P.may_change(VENDOR, "update", "Slot", "s1", "agenda-b")
    assert "Slot/s1" in refused.reason and "another client" in refused.reason
    assert not P.may_change(VENDOR, "delete", "Schedule", "x", None)  # the server's own
    assert P.may_change(ADMIN, "delete", "Schedule", "x", "agenda-b")
    assert P.may_change(Who("vendor"), "update", "Slot", "s1", None)  # FHIR_AUTH=none
    assert not P.may_change(REGULATOR, "update", "Slot", "s1", "regulation-sw")  # type first
    assert P.owner_of(Who("regulator", None, "810009999999")) == "810009999999"


def test_read_scopes() -> None:
    assert P.read_scope(ADMIN) == EVERYTHING
    vendor = P.read_scope(VENDOR)
    assert vendor.owner_only and vendor.owner == "agenda-a" and vendor.slot_labels is None
    assert vendor.admits("Slot", "agenda-a", "|CPTS|")
    assert not vendor.admits("Slot", "agenda-b", "|PUBLIC|")
    assert not vendor.admits("AuditEvent", "agenda-a", None)
    regulator = P.read_scope(REGULATOR)
    assert regulator.slot_labels == {"PUBLIC", "PRO", "SNP"}
    assert regulator.whole_type("Practitioner") and not regulator.whole_type("Slot")
    assert regulator.admits("Slot", None, "|CPTS|SNP|")  # one allowed label is enough
    assert not regulator.admits("Slot", None, "|CPTS|")
    assert not regulator.admits("Slot", None, None)  # before labels: unlabelled
    assert regulator.admits("Schedule", None, None)
    platform = P.read_scope(PLATFORM)
    assert platform.whole_type("Slot") and platform.never == {"AuditEvent"}


def test_slot_visibility_is_configured_per_role() -> None:
    configured = Policy({"regulator": ["PUBLIC", UNLABELLED], "platform": ["PUBLIC"]})
    assert configured.read_scope(REGULATOR).admits("Slot", None, None)
    assert configured.read_scope(PLATFORM).slot_labels == {"PUBLIC"}
    assert configured.read_scope(ADMIN) == EVERYTHING  # unnamed roles keep the default
    with pytest.raises(ValueError, match="unknown label"):
        Policy({"regulator": ["PUBLIK"]})
    with pytest.raises(ValueError, match="a vendor sees its own"):
        Policy({"vendor": ["PUBLIC"]})
    with pytest.raises(ValueError, match="name regulator"):
        Policy({"doctor": ["PUBLIC"]})


def test_slot_labels() -> None:
    system = policy.TYPE_CRENEAU
    slot = {
        "resourceType": "Slot",
        "meta": {
            "security": [
                {"system": system, "code": "SNP"},
                {"system": system, "code": "PUBLIC"},
                {"system": "urn:other", "code": "PRO"},
                {"system": system, "code": "SNP"},
                "garbage",
            ]
        },
    }
    assert slot_labels(slot) == "|PUBLIC|SNP|"
    assert slot_labels({"resourceType": "Slot"}) == "|UNLABELLED|"
    assert slot_labels({"resourceType": "Slot", "meta": {"security": "x"}}) == "|UNLABELLED|"
    assert slot_labels({"resourceType": "Schedule"}) is None
    assert label_set("|PUBLIC|SNP|") == {"PUBLIC", "SNP"} and label_set(None) == {UNLABELLED}
    assert set(LABELS) == {"PUBLIC", "PRO", "SNP", "CPTS", UNLABELLED}


def test_the_table_has_every_cell() -> None:
    table = P.table()
    for role in ROLES:
        section = table.split(f"## {role}\n", 1)[1].split("\n## ", 1)[0]
        rows = [
            line for line in section.splitlines() if line.startswith("| ") and "---" not in line
        ]
        assert len(rows) == len(TYPES) + 1  # the header and one row per type
        for line in rows[1:]:
            assert len(line.strip("|").split("|")) == len(INTERACTIONS) + 1
    assert "| Slot | labels | labels | labels | labels | labels | - |" in table  # regulator
    assert len(READS) + 4 == len(INTERACTIONS)


def test_docs_policy_md_is_generated_from_the_policy() -> None:
    assert DOC.read_text() == P.table(), "docs/policy.md is stale: run python -m auth.policy"


def test_the_entry_point_writes_the_table(tmp_path: Path) -> None:
    target = tmp_path / "policy.md"
    assert policy.main([str(target)]) == 0
    assert target.read_text() == P.table()
