"""Ordoclic: profile + reasons + available slots to SAS resources (golden file, profiles,
reason durations, repeated slots, the reference samples, bad records, arbitrary JSON)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from hypothesis import given, settings

from mappings import sas
from mappings.ordoclic import MAPPER
from tests.mappings.golden_json import (
    ARBITRARY_JSON,
    PARIS,
    check_golden,
    check_sensible,
    input_bytes,
    options,
    reference_files,
)

STAFF = "5a000000-0000-4000-8000-000000000001"
OTHER = "5a000000-0000-4000-8000-000000000002"
RPPS = {STAFF: "10000000049", OTHER: "10000000056"}
OPTIONS = options("entity.input.json", RPPS)


def test_golden() -> None:
    result = check_golden(MAPPER, "ordoclic", "entity", OPTIONS)
    [feed] = result.feeds
    assert result.issues == []
    starts_ends = [(s["start"], s["end"]) for s in feed.slots]
    # no timeEnd: the Téléconsultation reason's 10 minutes; statusID 1 is not offered
    assert starts_ends[1] == ("2026-10-25T02:30:00.000+01:00", "2026-10-25T02:40:00.000+01:00")
    assert feed.slots[1]["serviceType"][0]["coding"][0]["code"] == "VR"
    assert len(feed.slots) == 4
    # the two occurrences of one repeated slot are two slots
    assert len({s["id"] for s in feed.slots}) == 4


def test_the_slots_alone() -> None:
    document = json.loads(input_bytes("ordoclic", "entity"))
    october = options("alone.json", RPPS, now=datetime(2026, 10, 25, tzinfo=PARIS), window_days=2)
    result = MAPPER.map(json.dumps(document["slots"]).encode(), october)
    [feed] = result.feeds
    # no reasons: the default duration (reported), no profile: the calendar is the place
    assert feed.slots[1]["end"] == "2026-10-25T02:45:00.000+01:00"
    assert {i.code for i in result.issues} == {"incomplete"}
    assert feed.schedule_ids == [
        sas.schedule_id("ordoclic", STAFF, "ca000000-0000-4000-8000-000000000001")
    ]


def test_bad_records_are_located_and_the_other_practitioners_still_map() -> None:
    for field, value, words in (
        ("timeStart", None, "not a date-time"),
        ("timeStart", "2026-10-25 25:00", "not a date-time"),
        ("timeEnd", 1234, "not a date-time"),
        ("timeEnd", "2026-10-25T00:10:00Z", "ends before it starts"),
    ):
        document = json.loads(input_bytes("ordoclic", "entity"))
        for record in document["slots"]["slots"][1:]:
            record["medicalStaffID"] = OTHER
        document["slots"]["slots"][0][field] = value
        result = MAPPER.map(json.dumps(document).encode(), OPTIONS)
        [error] = [i for i in result.issues if i.severity == "error"]
        assert words in error.message and error.practitioner == STAFF
        assert error.location.startswith("entity.input.json#/slots/slots/0")
        by_key = {f.key: f for f in result.feeds}
        assert by_key[STAFF].rejected and not by_key[OTHER].rejected
        assert len(by_key[OTHER].slots) == 3


def test_a_request_window_that_is_not_one_rejects_everything() -> None:
    document = json.loads(input_bytes("ordoclic", "entity"))
    document["request"]["dateEnd"] = "2026-10-01T00:00:00Z"
    result = MAPPER.map(json.dumps(document).encode(), OPTIONS)
    assert all(f.rejected for f in result.feeds)
    [error] = [i for i in result.issues if i.severity == "error"]
    assert error.location == "entity.input.json#/request"


def test_truncated() -> None:
    result = MAPPER.map(input_bytes("ordoclic", "entity")[:-3], OPTIONS)
    assert result.feeds == [] and result.issues[0].code == "structure"


def test_every_reference_file() -> None:
    for path in reference_files("ordoclic"):
        result = MAPPER.map(path.read_bytes(), options(path.name))
        check_sensible(result, path.name)
        if path.name in ("empty_slots.json", "nextavailable_slots.json"):
            assert [i.severity for i in result.issues] == ["information"]


def test_the_reference_slots_all_map() -> None:
    files = {p.name: p for p in reference_files("ordoclic")}
    slots = json.loads(files["fetchslot-slots.json"].read_bytes())
    pair = {
        "slots": slots,
        "profile": json.loads(files["fetchslot-profile.json"].read_bytes()),
        "reasons": json.loads(files["fetchslot-reasons.json"].read_bytes()),
        "request": {"dateStart": "2021-05-01T00:00:00Z", "dateEnd": "2021-06-01T00:00:00Z"},
    }
    keys = {s["medicalStaffID"] for s in slots["slots"]}
    result = MAPPER.map(
        json.dumps(pair).encode(), options("pair", dict.fromkeys(keys, "10000000015"))
    )
    check_sensible(result, "pair")
    assert sum(len(f.slots) for f in result.feeds) == len(slots["slots"])


@settings(max_examples=300, deadline=None)
@given(ARBITRARY_JSON)
def test_arbitrary_json_never_raises(document: Any) -> None:
    for shaped in (
        document,
        {"slots": {"slots": [document]}, "profile": document, "request": document},
    ):
        result = MAPPER.map(json.dumps(shaped).encode(), options("x.json", RPPS))
        check_sensible(result, "x.json")
