"""Avecmondoc: availabilities per day to SAS resources (golden file, profiles, the
reference samples, bad records, arbitrary JSON)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings

from mappings.avecmondoc import MAPPER
from tests.mappings.golden_json import (
    ARBITRARY_JSON,
    check_golden,
    check_sensible,
    input_bytes,
    options,
    reference_files,
)

RPPS = {"612": "10000000056", "613": "10000000064"}
OPTIONS = options("week.input.json", RPPS)


def test_golden() -> None:
    result = check_golden(MAPPER, "avecmondoc", "week", OPTIONS)
    [feed] = result.feeds
    assert result.issues == []
    assert [s["identifier"][0]["value"] for s in feed.slots] == ["70001", "70003"]
    assert [s["serviceType"][0]["coding"][0]["code"] for s in feed.slots] == ["AMB", "VR"]
    role = feed.resources[1]
    assert role["organization"]["identifier"]["value"] == "590000017"  # finessNumber
    assert [w.isoformat() for w in feed.window or ()] == [
        "2026-03-27T23:00:00+00:00",
        "2026-03-29T22:00:00+00:00",
    ]


def test_the_days_alone() -> None:
    document = json.loads(input_bytes("avecmondoc", "week"))
    result = MAPPER.map(json.dumps(document["availabilities"]).encode(), OPTIONS)
    [feed] = result.feeds
    assert len(feed.slots) == 2 and "name" not in feed.resources[0]
    assert [i.code for i in result.issues] == ["incomplete"]  # the place has no address


def test_bad_records_are_located_and_the_other_practitioners_still_map() -> None:
    for field, value, words in (
        ("start", None, "not a date-time"),
        ("start", "lundi 9h", "not a date-time"),
        ("end", {"at": 1}, "not a date-time"),
        ("end", "2026-03-28T07:00:00.000Z", "ends before it starts"),
    ):
        document = json.loads(input_bytes("avecmondoc", "week"))
        document["availabilities"][1]["slots"][0]["businessHours"]["extendedProps"]["doctorId"] = (
            613
        )
        document["availabilities"][0]["slots"][0]["businessHours"][field] = value
        result = MAPPER.map(json.dumps(document).encode(), OPTIONS)
        [error] = [i for i in result.issues if i.severity == "error"]
        assert words in error.message and error.practitioner == "612"
        assert error.location.startswith("week.input.json#/availabilities/0/slots/0/businessHours")
        by_key = {f.key: f for f in result.feeds}
        assert by_key["612"].rejected and len(by_key["613"].slots) == 1


def test_wrong_types() -> None:
    document = json.loads(input_bytes("avecmondoc", "week"))
    document["availabilities"][0]["slots"][0]["businessHours"] = "09:00"
    document["availabilities"][1] = 7
    result = MAPPER.map(json.dumps(document).encode(), OPTIONS)
    locations = {i.location for i in result.issues if i.severity == "error"}
    assert locations == {
        "week.input.json#/availabilities/0/slots/0",
        "week.input.json#/availabilities/1",
    }


def test_truncated() -> None:
    result = MAPPER.map(input_bytes("avecmondoc", "week")[:500], OPTIONS)
    assert result.feeds == [] and result.issues[0].code == "structure"


def test_every_reference_file() -> None:
    for path in reference_files("avecmondoc"):
        result = MAPPER.map(path.read_bytes(), options(path.name))
        check_sensible(result, path.name)
        assert result.issues


def test_the_reference_week_maps() -> None:
    [path] = [p for p in reference_files("avecmondoc") if p.name == "get_availabilities.json"]
    days = json.loads(path.read_bytes())
    free = sum(1 for d in days for s in d.get("slots", []) if s.get("isAvailable") is True)
    result = MAPPER.map(path.read_bytes(), options(path.name, {"822": "10000000015"}))
    check_sensible(result, path.name)
    assert sum(len(f.slots) for f in result.feeds) == free > 0


@settings(max_examples=300, deadline=None)
@given(ARBITRARY_JSON)
def test_arbitrary_json_never_raises(document: Any) -> None:
    for shaped in (
        document,
        {"availabilities": [{"start": document, "slots": [document]}], "organization": document},
    ):
        result = MAPPER.map(json.dumps(shaped).encode(), options("x.json", RPPS))
        check_sensible(result, "x.json")
