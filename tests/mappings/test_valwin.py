"""Valwin sends naive Paris times: localised with zoneinfo across both DST changes."""

from __future__ import annotations

import orjson

from mappings import registry
from mappings.contract import MappingOptions

OPTIONS = MappingOptions(
    rpps_table={"agenda": "10000000015"},
    places={"agenda": {"line": "1 rue Haute", "postalCode": "35000", "city": "Rennes"}},
)


def one(start: str, end: str) -> tuple[str, str, list[str]]:
    page = {
        "result": [
            {"start": start, "end": end, "timeDivisionId": "d", "meetingConfigurationId": "agenda"}
        ]
    }
    result = registry.mapper("valwin").map(orjson.dumps(page), OPTIONS)
    slot = result.feeds[0].slots[0]
    return slot["start"], slot["end"], [i.message for i in result.issues]


def test_0230_on_the_last_sunday_of_march_is_0330_summer_time() -> None:
    start, end, notes = one("2026-03-29T02:30:00", "2026-03-29T03:40:00")
    assert (start, end) == ("2026-03-29T03:30:00.000+02:00", "2026-03-29T03:40:00.000+02:00")
    assert "does not exist" in notes[0]


def test_0230_on_the_last_sunday_of_october_is_the_first_one() -> None:
    start, end, notes = one("2026-10-25T02:30:00", "2026-10-25T02:40:00")
    assert (start, end) == ("2026-10-25T02:30:00.000+02:00", "2026-10-25T02:40:00.000+02:00")
    assert all("happens twice" in n for n in notes) and len(notes) == 2


def test_an_ordinary_winter_time_has_no_note() -> None:
    assert one("2026-01-12T10:00:00", "2026-01-12T10:10:00") == (
        "2026-01-12T10:00:00.000+01:00",
        "2026-01-12T10:10:00.000+01:00",
        [],
    )
