"""The JSON vendor mappers' shared builder: registration, keys, addresses, consultation
types, empty snapshots, the default duration reported once."""

from __future__ import annotations

import json
from datetime import datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from mappings import registry
from mappings._feeds import consultation, fhir_address, text_key
from mappings.contract import MappingResult
from tests.mappings.golden_json import PARIS, input_bytes, options

GROUP_A = ("doctolib", "keldoc", "maiia", "ordoclic", "avecmondoc")


def test_the_group_is_registered() -> None:
    known = registry.formats()
    for name in GROUP_A:
        assert known[name].name == name and known[name].description


def test_keys() -> None:
    assert [text_key(v) for v in (12, " a ", True, "", None, 1.5, "x" * 300)] == [
        "12",
        "a",
        None,
        None,
        None,
        None,
        None,
    ]


def test_addresses_need_line_city_and_postal_code() -> None:
    assert fhir_address(None, None, None, "Rue Etienne d'Orves, 56100 Lorient") == {
        "text": "Rue Etienne d'Orves, 56100 Lorient",
        "line": ["Rue Etienne d'Orves"],
        "city": "Lorient",
        "postalCode": "56100",
    }
    assert fhir_address(None, None, None, "Place Jeanne d'arc, 01200, Valserhône") == {
        "text": "Place Jeanne d'arc, 01200, Valserhône",
        "line": ["Place Jeanne d'arc"],
        "city": "Valserhône",
        "postalCode": "01200",
    }
    assert fhir_address("1 rue X", "Nantes", None) is None
    assert fhir_address(None, None, None, "somewhere") is None


def test_consultation_types() -> None:
    assert consultation("PHYSICAL") == "AMB"
    assert consultation(None, "inOffice") == "AMB"
    assert consultation("VIDEO") == "VR"
    assert consultation("Téléconsultation") == "VR"
    assert consultation("atHome") == "HH"
    assert consultation("Visite à domicile") == "HH"


def empty(result: MappingResult, key: str) -> bool:
    [feed] = [f for f in result.feeds if f.key == key]
    return not feed.rejected and feed.slots == [] and feed.window is not None


def test_an_agenda_asked_for_without_slots_is_an_empty_snapshot() -> None:
    keldoc = json.loads(input_bytes("keldoc", "timetable"))
    keldoc["timetable"]["availabilities"] = {"2026-03-28": [], "2026-03-29": []}
    rpps = {"71001": "10000000023", "71002": "10000000031"}
    result = registry.mapper("keldoc").map(json.dumps(keldoc).encode(), options("k", rpps))
    assert empty(result, "71001") and empty(result, "71002")

    ordoclic = json.loads(input_bytes("ordoclic", "entity"))
    staff = "5a000000-0000-4000-8000-000000000001"
    ordoclic["slots"]["slots"] = []
    ordoclic["request"]["medicalStaffId"] = staff
    mapped = registry.mapper("ordoclic").map(
        json.dumps(ordoclic).encode(), options("o", {staff: "10000000049"})
    )
    assert empty(mapped, staff)

    avecmondoc = json.loads(input_bytes("avecmondoc", "week"))
    for day in avecmondoc["availabilities"][:2]:
        day["slots"] = []
    mapped = registry.mapper("avecmondoc").map(
        json.dumps(avecmondoc).encode(), options("a", {"612": "10000000056"})
    )
    assert empty(mapped, "612")


def test_the_default_duration_is_reported_once_per_input() -> None:
    result = registry.mapper("doctolib").map(
        input_bytes("doctolib", "two-agendas"), options("d", {"4102": "10000000015"})
    )
    assert [i.code for i in result.issues].count("incomplete") == 1
    assert len(result.feeds[0].slots) == 4


def test_far_dates_are_refused_not_overflowing() -> None:
    document = json.loads(input_bytes("maiia", "center"))
    document["availabilities"]["items"][0]["startDateTime"] = "9999-12-31T23:59:59Z"
    document["availabilities"]["items"][0]["endDateTime"] = "9999-12-31T23:59:59Z"
    result = registry.mapper("maiia").map(
        json.dumps(document).encode(),
        options(
            "m",
            {"6b00000000000000000000b2": "10000000031"},
            now=datetime(2026, 10, 1, tzinfo=PARIS),
        ),
    )
    assert any("out of range" in i.message for i in result.issues)
    assert result.feeds[0].rejected and not result.feeds[1].rejected


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    for name in GROUP_A:
        result = registry.mapper(name).map(data, options("b.bin"))
        assert all(i.location.startswith("b.bin") for i in result.issues)


def test_hostile_nesting_is_refused_whole() -> None:
    for name in GROUP_A:
        result = registry.mapper(name).map(b"[" * 10_000 + b"]" * 10_000, options("n.json"))
        [issue] = result.issues  # orjson's own limit (1,024) answers before ours here
        assert result.feeds == [] and issue.code in ("too-costly", "structure")
        deep = b'{"a": ' * 70 + b"1" + b"}" * 70  # past our limit (64), under orjson's
        assert [i.code for i in registry.mapper(name).map(deep, options("n")).issues] == [
            "too-costly"
        ]


def test_a_naive_time_in_the_march_gap_is_moved_and_reported() -> None:
    document = json.loads(input_bytes("doctolib", "two-agendas"))
    document["availabilities"]["availabilities"][1]["slots"] = ["2026-03-29T02:30:00"]
    result = registry.mapper("doctolib").map(
        json.dumps(document).encode(), options("d", {"4102": "10000000015"})
    )
    assert result.feeds[0].slots[2]["start"] == "2026-03-29T03:30:00.000+02:00"
    assert any("does not exist" in i.message for i in result.issues)
