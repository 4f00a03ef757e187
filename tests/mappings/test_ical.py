"""iCalendar: golden outputs of our own calendars (opening hours under an Outlook-named
VTIMEZONE, DST nights, VFREEBUSY with IDNPS and rpps: attendees), every reference calendar,
DTEND before DTSTART reported at its line, and arbitrary text."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mappings import registry
from mappings.contract import MappingOptions
from tests.mappings.conftest import validation_errors
from tests.mappings.golden import DATA, REFERENCE, assert_golden, every_resource

MAPPER = registry.mapper("ical")


def _map(name: str, **options: Any) -> Any:
    data = (DATA / "ical" / name).read_bytes()
    return MAPPER.map(data, MappingOptions(source=name, **options))


def _valid(validator: Any, result: Any) -> None:
    for resource in every_resource(result):
        errors = validation_errors(validator, resource)
        assert errors == [], resource["resourceType"]


def test_opening_hours_minus_appointments(validator: Any) -> None:
    result = _map(
        "opening_hours.ics",
        now=datetime(2026, 6, 8, tzinfo=UTC),
        window_days=3,
        rpps_table={"Cabinet Exemple - Dr Test": "10000000015"},  # keyed on X-WR-CALNAME
        booking_url="https://rdv.example.org/b",
    )
    assert_golden(result, DATA / "ical" / "opening_hours.expected.json")
    assert result.issues == []
    (feed,) = result.feeds
    assert feed.window == (datetime(2026, 6, 8, tzinfo=UTC), datetime(2026, 6, 11, tzinfo=UTC))
    slots = [(s["start"], s["status"]) for s in feed.slots]
    # Monday and Tuesday 09:00-10:00 in 15-minute slots; Wednesday the 10th is an EXDATE;
    # Tuesday's 09:15 appointment takes a slot, the cancelled 09:45 one does not
    assert len(slots) == 8
    assert ("2026-06-09T09:15:00.000+02:00", "busy") in slots
    assert ("2026-06-09T09:45:00.000+02:00", "free") in slots
    assert not any(start.startswith("2026-06-10") for start, _ in slots)
    _valid(validator, result)


def test_dst_nights_are_cut_in_elapsed_time(validator: Any) -> None:
    result = _map("dst_nights.ics", now=datetime(2026, 3, 28, tzinfo=UTC), window_days=3)
    assert_golden(result, DATA / "ical" / "dst_nights.expected.json")
    (feed,) = result.feeds
    assert feed.rpps == "10000000031"  # ORGANIZER rpps:
    night = [(s["start"], s["end"]) for s in feed.slots if s["start"].startswith("2026-03-29")]
    # 01:30-03:30 on the night clocks go forward is one hour: four slots, none in the gap
    assert night == [
        ("2026-03-29T01:30:00.000+01:00", "2026-03-29T01:45:00.000+01:00"),
        ("2026-03-29T01:45:00.000+01:00", "2026-03-29T03:00:00.000+02:00"),
        ("2026-03-29T03:00:00.000+02:00", "2026-03-29T03:15:00.000+02:00"),
        ("2026-03-29T03:15:00.000+02:00", "2026-03-29T03:30:00.000+02:00"),
    ]
    _valid(validator, result)


def test_october_night_has_the_repeated_hour() -> None:
    result = _map("dst_nights.ics", now=datetime(2026, 10, 24, 22, tzinfo=UTC), window_days=1)
    starts = [s["start"] for s in result.feeds[0].slots]
    # 01:30-03:30 on the night clocks go back lasts three hours: 02:xx twice
    assert len(starts) == 12
    assert "2026-10-25T02:30:00.000+02:00" in starts and "2026-10-25T02:30:00.000+01:00" in starts


def test_free_busy_and_a_backwards_component(validator: Any) -> None:
    result = _map("freebusy.ics")
    assert_golden(result, DATA / "ical" / "freebusy.expected.json")
    good, backwards = result.feeds
    assert (good.rpps, good.rejected) == ("10000000023", False)  # IDNPS attendee
    assert good.window == (datetime(2026, 6, 1, tzinfo=UTC), datetime(2026, 6, 3, tzinfo=UTC))
    statuses = sorted((s["start"], s["status"]) for s in good.slots)
    assert statuses == [
        ("2026-06-01T10:00:00.000+02:00", "free"),
        ("2026-06-01T10:20:00.000+02:00", "busy"),
        ("2026-06-01T11:00:00.000+02:00", "free"),  # a PT20M period
        ("2026-06-02T16:00:00.000+02:00", "busy"),  # FBTYPE defaults to BUSY
    ]
    assert backwards.rejected and backwards.slots == []
    (issue,) = result.issues
    assert (issue.severity, issue.location, issue.practitioner) == (
        "error",
        "freebusy.ics:15",
        "10000000049",
    )
    _valid(validator, result)


def test_the_same_period_twice_is_one_slot() -> None:
    text = (DATA / "ical" / "freebusy.ics").read_text()
    line = "FREEBUSY;FBTYPE=BUSY:20260601T082000Z/20260601T084000Z\n"
    result = MAPPER.map(text.replace(line, line * 2).encode(), MappingOptions())
    ids = [s["id"] for s in result.feeds[0].slots]
    assert len(ids) == len(set(ids)) == 4


def test_an_unreadable_property_rejects_its_practitioner() -> None:
    text = (DATA / "ical" / "opening_hours.ics").read_text()
    # a TZID with two values: icalendar keeps the VEVENT, its DTEND listed in .errors
    broken = text.replace(
        "DTEND;TZID=Romance Standard Time:20260609T093000",
        "DTEND;TZID=Romance Standard Time,UTC:20260609T093000",
    )
    options = MappingOptions(
        source="b.ics",
        now=datetime(2026, 6, 8, tzinfo=UTC),
        rpps_table={"Cabinet Exemple - Dr Test": "10000000015"},
    )
    result = MAPPER.map(broken.encode(), options)
    (feed,) = result.feeds
    assert feed.rejected
    assert [(i.code, i.location, i.practitioner) for i in result.issues] == [
        ("structure", "b.ics:29", "Cabinet Exemple - Dr Test")
    ]
    # a FREEBUSY value icalendar cannot read at all stops the whole file (no line known)
    garbage = (
        (DATA / "ical" / "freebusy.ics").read_text().replace("FREEBUSY:2026060", "FREEBUSY:2026/")
    )
    result = MAPPER.map(garbage.encode(), MappingOptions(source="g.ics"))
    assert result.feeds == [] and [(i.code, i.location) for i in result.issues] == [
        ("structure", "g.ics")
    ]


def test_an_unknown_practitioner_is_reported_never_invented() -> None:
    result = _map("opening_hours.ics", now=datetime(2026, 6, 8, tzinfo=UTC))
    (feed,) = result.feeds
    assert feed.rejected and feed.rpps is None and feed.slots == []
    assert [i.code for i in result.issues] == ["not-found"]


def test_bad_encoding_and_a_huge_input_are_refused_whole() -> None:
    data = (DATA / "ical" / "freebusy.ics").read_bytes()
    latin = MAPPER.map(data.replace(b"Libre", "Libré".encode("latin-1")), MappingOptions())
    assert latin.feeds == [] and [i.code for i in latin.issues] == ["invalid"]
    huge = MAPPER.map(data, MappingOptions(max_bytes=100))
    assert huge.feeds == [] and [i.code for i in huge.issues] == ["too-costly"]


REFERENCE_NOW = {
    "icalendar_vavailability_rfc7953_1.ics": datetime(2011, 10, 3, tzinfo=UTC),
    "rie_daylight_saving_time.ics": datetime(2019, 3, 29, tzinfo=UTC),
    "rie_issue_173_google_export_europe_paris.ics": datetime(2024, 1, 8, tzinfo=UTC),
}
REFERENCE_FILES = sorted((REFERENCE / "ical").glob("*.ics")) if REFERENCE.is_dir() else []


@pytest.mark.skipif(not REFERENCE_FILES, reason="../shared/reference/vendors absent")
@pytest.mark.parametrize("path", REFERENCE_FILES, ids=lambda p: p.name)
def test_every_reference_calendar_maps(path: Any, validator: Any) -> None:
    table = {"mailto:bernard@example.com": "10000000015", path.name: "10000000023"}
    table |= {"attendee@domain.tld": "10000000031", "jsmith@example.com": "10000000049"}
    options = MappingOptions(source=path.name, now=REFERENCE_NOW.get(path.name), rpps_table=table)
    result = MAPPER.map(path.read_bytes(), options)
    assert result.feeds
    if "dtend_before_dtstart" in path.name:
        (issue,) = result.issues
        assert issue.location == f"{path.name}:2" and result.feeds[0].rejected
    else:
        assert result.issues == [] and all(feed.slots for feed in result.feeds)
        _valid(validator, result)


@pytest.mark.skipif(not REFERENCE_FILES, reason="../shared/reference/vendors absent")
def test_reference_berlin_export_crosses_the_march_change() -> None:
    path = REFERENCE / "ical" / "rie_daylight_saving_time.ics"
    options = MappingOptions(
        now=datetime(2019, 3, 25, tzinfo=UTC), window_days=14, rpps_table={"input": "10000000023"}
    )
    starts = [s["start"] for s in MAPPER.map(path.read_bytes(), options).feeds[0].slots]
    # the weekly Thursday 08:30 Berlin opening stays 08:30 local on both sides of 31 March
    assert "2019-03-28T08:30:00.000+01:00" in starts
    assert "2019-04-04T08:30:00.000+02:00" in starts


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "BEGIN:VCALENDAR",
                "END:VCALENDAR",
                "BEGIN:VEVENT",
                "END:VEVENT",
                "BEGIN:VFREEBUSY",
                "END:VFREEBUSY",
                "DTSTART:20260601T090000",
                "DTEND:20260601T080000Z",
                "RRULE:FREQ=MINUTELY",
                "FREEBUSY;FBTYPE=FREE:20260601T080000Z/PT1H",
                "ORGANIZER:rpps:10000000015",
                "DURATION:-PT1H",
                "EXDATE:x",
            ]
        )
        | st.text(max_size=40),
        max_size=20,
    )
)
def test_arbitrary_text_never_raises(lines: list[str]) -> None:
    MAPPER.map("\r\n".join(lines).encode(), MappingOptions(now=datetime(2026, 6, 1, tzinfo=UTC)))


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    MAPPER.map(data, MappingOptions())
