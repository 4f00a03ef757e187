"""The manual-entry CSV: separators, BOM, header, every bad line reported at file:LINE with
its column while the other lines go on, Paris DST, whole-day windows per RPPS."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from mappings import registry
from mappings.contract import MappingOptions
from tests.mappings.conftest import validation_errors

PARIS = ZoneInfo("Europe/Paris")
HEADER = "rpps;place;address;postal_code;city;date;start;end;duration;consultation;slot_type\n"
PLACE = "Cabinet du Lac;1 rue du Lac;74000;Annecy"


def run(text: str, encoding: str = "utf-8") -> object:
    return registry.mapper("csv").map(text.encode(encoding), MappingOptions(source="in.csv"))


def test_a_slot_in_the_march_gap_moves_forward_and_is_reported() -> None:
    result = run(HEADER + f"10000000015;{PLACE};2026-03-29;02:30;;30;AMB;PUBLIC\n")
    (feed,) = result.feeds
    assert (feed.slots[0]["start"], feed.slots[0]["end"]) == (
        "2026-03-29T03:30:00.000+02:00",
        "2026-03-29T04:00:00.000+02:00",
    )
    assert [i.location for i in result.issues] == ["in.csv:2"]
    assert "does not exist" in result.issues[0].message and not feed.rejected


def test_a_slot_in_the_october_repeated_hour_is_the_first_and_lasts_its_duration() -> None:
    result = run(HEADER + f"10000000015;{PLACE};2026-10-25;02:30;;30;AMB;PUBLIC\n")
    slot = result.feeds[0].slots[0]
    # 30 real minutes: 02:30 summer time to 02:00 winter time
    assert (slot["start"], slot["end"]) == (
        "2026-10-25T02:30:00.000+02:00",
        "2026-10-25T02:00:00.000+01:00",
    )
    assert "happens twice" in result.issues[0].message


def test_a_slot_wholly_in_the_march_gap_moves_forward_by_both_ends() -> None:
    result = run(HEADER + f"10000000015;{PLACE};2026-03-29;02:00;02:45;;AMB;PUBLIC\n")
    slot = result.feeds[0].slots[0]
    assert (slot["start"], slot["end"]) == (
        "2026-03-29T03:00:00.000+02:00",
        "2026-03-29T03:45:00.000+02:00",
    )
    assert [i.message.split(":")[0] for i in result.issues] == ["start", "end"]


def test_comma_separated_with_a_bom_and_crlf() -> None:
    text = "\ufeff" + HEADER.replace(";", ",").replace("\n", "\r\n")
    text += (
        "10000000015,Cabinet du Lac,1 rue du Lac,74000,Annecy,2026-06-15,09:00,09:30,,VR,SNP\r\n"
    )
    (feed,) = run(text).feeds
    slot = feed.slots[0]
    assert slot["serviceType"][0]["coding"][0]["code"] == "VR"
    assert slot["meta"]["security"][0]["code"] == "SNP"


def test_the_window_is_the_whole_days_from_first_to_last_date() -> None:
    text = HEADER + "".join(
        f"10000000015;{PLACE};{day};10:00;;15;AMB;PUBLIC\n" for day in ("2026-06-17", "2026-06-15")
    )
    (feed,) = run(text).feeds
    assert feed.window == (datetime(2026, 6, 15, tzinfo=PARIS), datetime(2026, 6, 18, tzinfo=PARIS))


def test_a_header_is_required() -> None:
    result = run(f"10000000015;{PLACE};2026-06-15;10:00;;15;AMB;PUBLIC\n")
    assert result.feeds == [] and result.issues[0].location == "in.csv:1"
    assert "header lacks" in result.issues[0].message


def test_not_utf8_is_reported_with_its_line() -> None:
    result = run(
        HEADER + "10000000015;Cabinet de l'Étang;1 rue;74000;Annecy;2026-06-15;10:00;;15;;\n",
        "latin-1",
    )
    assert result.feeds == [] and result.issues[0].location == "in.csv:2"


def test_a_bad_line_rejects_its_practitioner_only() -> None:
    text = HEADER + (
        f"10000000015;{PLACE};2026-06-15;10:00;;15;AMB;PUBLIC\n"
        f"10000000015;{PLACE};2026-06-15;11:00;;15;AMB;CPTS\n"
        f"10000000015;{PLACE};2026-W24-1;11:00;;15;AMB;PUBLIC\n"
        f"10000000023;{PLACE};2026-06-15;10:00;;15;AMB;PUBLIC\n"
    )
    result = run(text)
    assert {f.key: f.rejected for f in result.feeds} == {"10000000015": True, "10000000023": False}
    assert [(i.location, i.message.split(":")[0]) for i in result.issues] == [
        ("in.csv:3", "slot_type"),
        ("in.csv:4", "date"),
    ]


CELL = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(CELL, min_size=0, max_size=12), max_size=6), st.sampled_from([";", ","]))
def test_no_table_makes_it_raise(rows: list[list[str]], sep: str) -> None:
    text = HEADER.replace(";", sep) + "\n".join(sep.join(row) for row in rows)
    result = registry.mapper("csv").map(text.encode(), MappingOptions())
    for feed in result.feeds:
        assert feed.rpps == feed.key and len(feed.key) == 11


def test_the_shipped_example_maps_cleanly(validator: Any) -> None:
    example = Path(__file__).parents[2] / "examples" / "manual-entry.csv"
    result = registry.mapper("csv").map(example.read_bytes(), MappingOptions(source="x.csv"))
    assert result.issues == [] and [f.key for f in result.feeds] == ["10000000015", "10000000023"]
    for feed in result.feeds:
        for resource in [*feed.resources, *feed.slots]:
            assert validation_errors(validator, resource) == []
