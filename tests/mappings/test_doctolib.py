"""Doctolib: booking + availabilities to SAS resources (golden file, profiles, the reference
samples, bad records, arbitrary JSON)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings

from mappings.doctolib import MAPPER
from tests.mappings.golden_json import (
    ARBITRARY_JSON,
    check_golden,
    check_sensible,
    input_bytes,
    options,
    reference_files,
)

RPPS = {"4102": "10000000015"}
OPTIONS = options("two-agendas.input.json", RPPS)


def test_golden() -> None:
    result = check_golden(MAPPER, "doctolib", "two-agendas", OPTIONS)
    [feed] = result.feeds
    assert feed.key == "4102" and not feed.rejected
    # the slot before the March gap lasts 15 real minutes: it ends at 03:00 summer time
    assert [(s["start"], s["end"]) for s in feed.slots][2] == (
        "2026-03-29T01:45:00.000+01:00",
        "2026-03-29T03:00:00.000+02:00",
    )
    assert [i.code for i in result.issues] == ["incomplete"]  # the default duration, once


def test_the_availabilities_alone_say_what_they_lack() -> None:
    document = json.loads(input_bytes("doctolib", "two-agendas"))
    result = MAPPER.map(json.dumps(document["availabilities"]).encode(), OPTIONS)
    assert result.feeds == []
    [issue] = result.issues
    assert issue.severity == "error" and "without a booking" in issue.message


def test_several_agendas_and_none_named() -> None:
    document = json.loads(input_bytes("doctolib", "two-agendas"))
    del document["agenda_id"]
    result = MAPPER.map(json.dumps(document).encode(), OPTIONS)
    assert result.feeds == [] and "2 agendas" in result.issues[0].message


def test_no_rpps_rejects_the_feed() -> None:
    result = MAPPER.map(input_bytes("doctolib", "two-agendas"), options("f.json"))
    [feed] = result.feeds
    assert feed.rejected and feed.slots == [] and feed.resources == []
    assert any(i.code == "not-found" and i.practitioner == "4102" for i in result.issues)


def bad(slot: object) -> tuple[Any, list[Any]]:
    document = json.loads(input_bytes("doctolib", "two-agendas"))
    document["availabilities"]["availabilities"][1]["slots"][0] = slot
    result = MAPPER.map(json.dumps(document).encode(), OPTIONS)
    return result, [i for i in result.issues if i.severity == "error"]


def test_bad_records_are_located_and_reject_the_feed() -> None:
    for slot, words in (
        ({"steps": []}, "not a date-time"),  # missing start
        ("2026-13-45T25:00:00.000+01:00", "not a date-time"),
        (42, "not a date-time"),
        ("2026-03-29", "a day, not a time"),
    ):
        result, errors = bad(slot)
        [error] = errors
        assert words in error.message
        assert error.location == "two-agendas.input.json#/availabilities/availabilities/1/slots/0"
        assert error.practitioner == "4102" and result.feeds[0].rejected


def test_truncated() -> None:
    result = MAPPER.map(input_bytes("doctolib", "two-agendas")[:300], OPTIONS)
    assert result.feeds == [] and result.issues[0].code == "structure"


def test_every_reference_file() -> None:
    for path in reference_files("doctolib"):
        result = MAPPER.map(path.read_bytes(), options(path.name))
        check_sensible(result, path.name)
        assert result.issues  # none of them is a {booking, availabilities} pair


def test_a_reference_pair() -> None:
    [booking] = [p for p in reference_files("doctolib") if p.name == "next-slot-booking.json"]
    [days] = [
        p for p in reference_files("doctolib") if p.name == "doctoshotgun_availabilities.json"
    ]
    pair = {
        "booking": json.loads(booking.read_bytes()),
        "availabilities": json.loads(days.read_bytes()),
    }
    result = MAPPER.map(json.dumps(pair).encode(), options("pair", {"3": "10000000015"}))
    check_sensible(result, "pair")
    assert [len(f.slots) for f in result.feeds] == [2]


@settings(max_examples=300, deadline=None)
@given(ARBITRARY_JSON)
def test_arbitrary_json_never_raises(document: Any) -> None:
    for shaped in (document, {"booking": {"data": document}, "availabilities": document}):
        result = MAPPER.map(json.dumps(shaped).encode(), options("x.json", RPPS))
        check_sensible(result, "x.json")
