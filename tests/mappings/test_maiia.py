"""Maiia: availabilities + hcd to SAS resources, the RPPS from cpsId (golden file, profiles,
the October repeated hour, the reference samples, bad records, arbitrary JSON)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings

from mappings.maiia import MAPPER
from tests.mappings.golden_json import (
    ARBITRARY_JSON,
    check_golden,
    check_sensible,
    input_bytes,
    options,
    reference_files,
)

B1, B2 = "6b00000000000000000000b1", "6b00000000000000000000b2"
RPPS = {B2: "10000000031"}  # B1's RPPS is its cpsId
OPTIONS = options("center.input.json", RPPS)


def test_golden() -> None:
    result = check_golden(MAPPER, "maiia", "center", OPTIONS)
    first, second = result.feeds
    assert (first.key, first.rpps, second.rpps) == (B1, "10000000015", "10000000031")
    assert result.issues == []
    # 00:30Z and 01:30Z are both 02:30 in Paris on the night clocks go back
    assert [s["start"] for s in first.slots] == [
        "2026-10-25T02:30:00.000+02:00",
        "2026-10-25T02:30:00.000+01:00",
    ]
    assert second.slots[0]["serviceType"][0]["coding"][0]["code"] == "VR"
    name = first.resources[0]["name"][0]
    assert (name["family"], name["given"]) == ("TESTARD", ["Aline"])


def test_the_availabilities_alone_need_the_table() -> None:
    document = json.loads(input_bytes("maiia", "center"))
    alone = json.dumps(document["availabilities"]).encode()
    result = MAPPER.map(alone, options("a.json"))
    assert [(f.key, f.rejected) for f in result.feeds] == [(B1, True), (B2, True)]
    result = MAPPER.map(alone, options("a.json", {B1: "10000000015", B2: "10000000031"}))
    # no request window: options.now over window_days, the October slots are outside it
    assert all(not f.rejected for f in result.feeds)
    later = options("a.json", {B1: "10000000015", B2: "10000000031"}, window_days=40)
    assert sum(len(f.slots) for f in MAPPER.map(alone, later).feeds) == 0
    assert any("outside the feed's window" in i.message for i in result.issues)


def test_a_cps_id_that_is_not_an_rpps_is_not_used() -> None:
    document = json.loads(input_bytes("maiia", "center"))
    document["hcd"]["items"][0]["professional"]["cpsId"] = "1234"
    result = MAPPER.map(json.dumps(document).encode(), OPTIONS)
    assert result.feeds[0].rejected and not result.feeds[1].rejected


def test_bad_records_are_located_and_the_other_practitioners_still_map() -> None:
    for field, value, words in (
        ("startDateTime", None, "not a date-time"),
        ("startDateTime", "25/10/2026 02:30", "not a date-time"),
        ("endDateTime", ["2026"], "not a date-time"),
        ("endDateTime", "2026-10-25T00:00:00.000Z", "ends before it starts"),
    ):
        document = json.loads(input_bytes("maiia", "center"))
        document["availabilities"]["items"][0][field] = value
        result = MAPPER.map(json.dumps(document).encode(), OPTIONS)
        [error] = [i for i in result.issues if i.severity == "error"]
        assert words in error.message and error.practitioner == B1
        assert error.location.startswith("center.input.json#/availabilities/items/0")
        assert [f.rejected for f in result.feeds] == [True, False]
        assert len(result.feeds[1].slots) == 1


def test_truncated() -> None:
    result = MAPPER.map(input_bytes("maiia", "center")[:1000], OPTIONS)
    assert result.feeds == [] and result.issues[0].location.startswith("center.input.json:")


def test_every_reference_file() -> None:
    for path in reference_files("maiia"):
        result = MAPPER.map(path.read_bytes(), options(path.name))
        check_sensible(result, path.name)
        assert result.issues


def test_the_reference_availabilities_all_map() -> None:
    [path] = [p for p in reference_files("maiia") if p.name == "availabilities.json"]
    document = json.loads(path.read_bytes())
    keys = {item["practitionerId"] for item in document["items"]}
    first = min(item["startDateTime"] for item in document["items"])
    wide = {"availabilities": document, "from": first, "to": "2021-12-31T00:00:00.000Z"}
    result = MAPPER.map(
        json.dumps(wide).encode(),
        options(path.name, dict.fromkeys(keys, "10000000015")),
    )
    check_sensible(result, path.name)
    assert sum(len(f.slots) for f in result.feeds) == len(document["items"]) == 798
    for feed in result.feeds:
        for slot in feed.slots:
            assert slot["start"].endswith(("+02:00", "+01:00"))


@settings(max_examples=300, deadline=None)
@given(ARBITRARY_JSON)
def test_arbitrary_json_never_raises(document: Any) -> None:
    for shaped in (
        document,
        {"availabilities": {"items": [document]}, "hcd": document, "from": document},
    ):
        result = MAPPER.map(json.dumps(shaped).encode(), options("x.json", RPPS))
        check_sensible(result, "x.json")
