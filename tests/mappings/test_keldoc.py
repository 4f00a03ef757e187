"""Keldoc: a motive's timetable to SAS resources (golden file, profiles, the reference
samples, bad records, arbitrary JSON)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings

from mappings.keldoc import MAPPER
from tests.mappings.golden_json import (
    ARBITRARY_JSON,
    check_golden,
    check_sensible,
    input_bytes,
    options,
    reference_files,
)

RPPS = {"71001": "10000000023"}  # 71002 is left out on purpose: its feed is rejected
OPTIONS = options("timetable.input.json", RPPS)


def test_golden() -> None:
    result = check_golden(MAPPER, "keldoc", "timetable", OPTIONS)
    good, unknown = result.feeds
    assert (good.key, good.rejected, len(good.slots)) == ("71001", False, 2)
    assert (unknown.key, unknown.rejected, unknown.slots) == ("71002", True, [])
    # the motive is a teleconsultation: VR
    assert {s["serviceType"][0]["coding"][0]["code"] for s in good.slots} == {"VR"}
    assert good.slots[1]["start"] == "2026-03-29T03:30:00.000+02:00"


def test_the_timetable_alone_maps_slots_that_name_their_agenda() -> None:
    document = json.loads(input_bytes("keldoc", "timetable"))
    result = MAPPER.map(json.dumps(document["timetable"]).encode(), OPTIONS)
    assert [(f.key, len(f.slots)) for f in result.feeds] == [("71001", 2), ("71002", 0)]
    assert result.feeds[0].slots[0]["serviceType"][0]["coding"][0]["code"] == "AMB"


def test_bad_records_are_located_and_the_other_practitioners_still_map() -> None:
    rpps = {"71001": "10000000023", "71002": "10000000031"}
    for entry, words in (
        ({"agenda_id": 71002, "start_time": "yesterday"}, "not a date-time"),
        ({"agenda_id": 71002, "start_time": 1711670400}, "not a date-time"),
        ({"agenda_id": 71002, "start_time": "2026-02-30T10:00:00.000000+0100"}, "not a date-time"),
    ):
        document = json.loads(input_bytes("keldoc", "timetable"))
        document["timetable"]["availabilities"]["2026-03-29"][0] = entry
        result = MAPPER.map(json.dumps(document).encode(), options("t.json", rpps))
        [error] = [i for i in result.issues if i.severity == "error"]
        assert words in error.message and error.practitioner == "71002"
        assert error.location == "t.json#/timetable/availabilities/2026-03-29/0/start_time"
        by_key = {f.key: f for f in result.feeds}
        assert by_key["71002"].rejected and not by_key["71001"].rejected
        assert len(by_key["71001"].slots) == 2


def test_a_slot_of_no_agenda_and_a_slot_that_is_not_an_object() -> None:
    document = json.loads(input_bytes("keldoc", "timetable"))
    document["motive"]["agendas"] = []
    document["timetable"]["availabilities"]["2026-03-30"] = [
        {"start_time": "2026-03-30T10:00:00.000000+0200"},
        "10:00",
    ]
    result = MAPPER.map(json.dumps(document).encode(), OPTIONS)
    errors = [(i.location, i.practitioner) for i in result.issues if i.severity == "error"]
    assert ("timetable.input.json#/timetable/availabilities/2026-03-30/0", None) in errors
    assert ("timetable.input.json#/timetable/availabilities/2026-03-30/1", None) in errors
    assert len(result.feeds[0].slots) == 2


def test_truncated_and_wrong_encoding() -> None:
    data = input_bytes("keldoc", "timetable")
    assert MAPPER.map(data[:-40], OPTIONS).issues[0].code == "structure"
    assert MAPPER.map(data.decode().encode("utf-16"), OPTIONS).issues[0].code == "invalid"


def test_every_reference_file() -> None:
    for path in reference_files("keldoc"):
        result = MAPPER.map(path.read_bytes(), options(path.name))
        check_sensible(result, path.name)
        assert result.feeds == [] and result.issues  # no full timetable among them
        if "timetable" in path.name:
            assert [i.severity for i in result.issues] == ["information"]


@settings(max_examples=300, deadline=None)
@given(ARBITRARY_JSON)
def test_arbitrary_json_never_raises(document: Any) -> None:
    for shaped in (document, {"timetable": {"availabilities": document}, "motive": document}):
        result = MAPPER.map(json.dumps(shaped).encode(), options("x.json", RPPS))
        check_sensible(result, "x.json")
