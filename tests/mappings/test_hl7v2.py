"""HL7 v2 SIU: golden outputs of our own fixtures (ClicRDV variant and generic v2.3), every
reference message, DST times, broken segments at their line, and arbitrary text."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mappings import registry
from mappings.contract import MappingOptions
from tests.mappings.conftest import validation_errors
from tests.mappings.golden import DATA, REFERENCE, assert_golden, every_resource

MAPPER = registry.mapper("hl7v2")
GENERIC_TABLE = {"D42": "10000000023"}


def _map(name: str, **options: Any) -> Any:
    data = (DATA / "hl7v2" / name).read_bytes()
    return MAPPER.map(data, MappingOptions(source=name, **options))


def test_clicrdv_stream_golden_and_valid(validator: Any) -> None:
    result = _map("clicrdv_stream.hl7", booking_url="https://rdv.example.org/r?c=1")
    assert_golden(result, DATA / "hl7v2" / "clicrdv_stream.expected.json")
    (feed,) = result.feeds
    assert feed.rpps == "10000000015" and feed.window is None and not feed.rejected
    (slot,) = feed.slots  # one appointment: S12, S13 (moved), S15 (freed) keep one Slot
    assert slot["status"] == "free" and slot["comment"].startswith("https://rdv.example.org/")
    # S13 moved it into the October repeated hour: the first 02:30 (+02:00) is taken
    assert slot["start"] == "2026-10-25T02:30:00.000+02:00"
    assert slot["end"] == "2026-10-25T02:50:00.000+02:00"
    (appointment,) = [r for r in feed.resources if r["resourceType"] == "Appointment"]
    assert appointment["status"] == "cancelled"
    assert appointment["slot"] == [{"reference": f"Slot/{slot['id']}"}]
    role = next(r for r in feed.resources if r["resourceType"] == "PractitionerRole")
    assert role["organization"]["identifier"]["value"] == "1449999999"  # FINESS of AIG-4
    notes = [i.message for i in result.issues]
    assert any("does not exist" in n for n in notes)  # S12 at 02:30 in the March gap
    assert any("happens twice" in n for n in notes)
    assert all(i.severity == "warning" for i in result.issues)
    for resource in every_resource(result):
        assert validation_errors(validator, resource) == [], resource["resourceType"]


def test_generic_v23_broken_message_reported_others_go_on(validator: Any) -> None:
    result = _map("generic_v23.hl7", rpps_table=GENERIC_TABLE)
    assert_golden(result, DATA / "hl7v2" / "generic_v23.expected.json")
    errors = [i for i in result.issues if i.severity == "error"]
    assert [(e.location, e.code) for e in errors] == [("generic_v23.hl7:9", "structure")]
    assert "message 2" in errors[0].message and "segment 3" in errors[0].message
    (feed,) = result.feeds
    (slot,) = feed.slots
    (appointment,) = [r for r in feed.resources if r["resourceType"] == "Appointment"]
    assert appointment["status"] == "noshow" and slot["status"] == "busy"
    # S26 without SCH-11: AIP-6 with its offset, AIP-9/10 duration
    assert (appointment["start"], appointment["end"]) == (
        "2026-06-12T10:00:00.000+02:00",
        "2026-06-12T10:45:00.000+02:00",
    )
    assert [i["value"] for i in appointment["identifier"]] == ["B200"]  # SCH-2 filler
    assert appointment["participant"][0]["actor"]["identifier"]["value"] == "810000000023"
    for resource in every_resource(result):
        assert validation_errors(validator, resource) == [], resource["resourceType"]


def test_an_unknown_practitioner_is_reported_never_invented() -> None:
    result = _map("generic_v23.hl7")
    (feed,) = result.feeds
    assert feed.rejected and feed.rpps is None
    assert any(i.code == "not-found" and i.practitioner == "D42" for i in result.issues)


def test_newline_separators_and_a_default_duration() -> None:
    text = (DATA / "hl7v2" / "generic_v23.hl7").read_text().splitlines()
    sch = "SCH|X1^A|Y1^A|||||||||^^^20260612140000"
    message = "\n".join([text[0], sch, "AIP|1|A|D42^EXEMPLE^PAUL"])
    result = MAPPER.map(
        message.encode(),
        MappingOptions(rpps_table=GENERIC_TABLE, default_duration=timedelta(minutes=10)),
    )
    (slot,) = result.feeds[0].slots
    assert slot["end"] == "2026-06-12T14:10:00.000+02:00"
    assert [i.code for i in result.issues] == ["incomplete"]
    later = MAPPER.map(message.replace("|2.3", "|2.8").encode(), MappingOptions())
    assert "version 2.8" in later.issues[0].message


def test_latin1_is_read_and_said_and_a_huge_input_refused() -> None:
    data = (DATA / "hl7v2" / "generic_v23.hl7").read_text().replace("motif", "motif é")
    result = MAPPER.map(data.encode("latin-1"), MappingOptions(rpps_table=GENERIC_TABLE))
    assert [i.code for i in result.issues if i.severity == "warning"] == ["invalid"]
    assert len(result.feeds[0].slots) == 1
    huge = MAPPER.map(data.encode(), MappingOptions(max_bytes=100))
    assert huge.feeds == [] and [i.code for i in huge.issues] == ["too-costly"]


@pytest.mark.parametrize(
    ("trigger", "appointment", "slot"),
    [
        ("S12", "booked", "busy"),
        ("S13", "booked", "busy"),
        ("S14", "booked", "busy"),
        ("S15", "cancelled", "free"),
        ("S17", "cancelled", "free"),
        ("S26", "noshow", "busy"),
    ],
)
def test_each_event(trigger: str, appointment: str, slot: str) -> None:
    message = (
        f"MSH|^~\\&|A|B|C|D|20260601000000||SIU^{trigger}|1|P|2.4\r"
        "SCH||X9^A|||||||||^^15^20260612090000\rAIP|1||10000000015^TEST^A"
    )
    result = MAPPER.map(message.encode(), MappingOptions())
    (feed,) = result.feeds
    (appt,) = [r for r in feed.resources if r["resourceType"] == "Appointment"]
    assert (appt["status"], feed.slots[0]["status"], result.issues) == (appointment, slot, [])


def test_other_messages_are_skipped_with_a_warning() -> None:
    result = MAPPER.map(b"MSH|^~\\&|A|B|C|D|20260601||ADT^A01|1|P|2.5\rPID|1", MappingOptions())
    assert result.feeds == [] and [i.code for i in result.issues] == ["not-supported"]


REFERENCE_FILES = sorted((REFERENCE / "hl7v2").glob("*.hl7")) if REFERENCE.is_dir() else []


@pytest.mark.skipif(not REFERENCE_FILES, reason="../shared/reference/vendors absent")
@pytest.mark.parametrize("path", REFERENCE_FILES, ids=lambda p: p.name)
def test_every_reference_message_maps(path: Any, validator: Any) -> None:
    result = MAPPER.map(path.read_bytes(), MappingOptions(source=path.name))
    assert not [i for i in result.issues if i.severity == "error" and i.code != "not-found"]
    (feed,) = result.feeds
    if path.name.startswith("clicrdv"):  # RPPS in SCH-16, RPPS@FINESS in AIG-4
        assert feed.rpps is not None and not feed.rejected
        for resource in every_resource(result):
            assert validation_errors(validator, resource) == [], resource["resourceType"]
    else:  # no RPPS in the generic samples: reported until the RPPS table names them
        assert feed.rejected


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("MSHCAIPGL|^~\\&\r\n0123456789+-S12.@ x"), max_size=400))
def test_arbitrary_text_never_raises(text: str) -> None:
    result = MAPPER.map(("MSH|^~\\&|" + text).encode(), MappingOptions())
    assert result.feeds or result.issues or not text.strip()


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    MAPPER.map(data, MappingOptions())
