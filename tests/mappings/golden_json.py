"""Golden files and shared checks for the JSON vendor mappers (the event formats' are in
``golden.py``).

``tests/mappings/data/<vendor>/<name>.input.json`` is our own fixture in the vendor's real
shape (invented people); ``<name>.expected.json`` the result reviewed by hand once.
``REGEN_GOLDEN=1 pytest tests/mappings`` rewrites the expected files (review the diff);
without it the tests compare.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import strategies as st

from mappings.contract import FhirJson, Mapper, MappingOptions, MappingResult
from tests.conftest import REFERENCE

DATA = Path(__file__).parent / "data"
VENDORS = REFERENCE / "vendors"
PARIS = ZoneInfo("Europe/Paris")
BOOKING = "https://rdv.example.org/sas?origin=sas"


def options(source: str, rpps: dict[str, str] | None = None, **more: Any) -> MappingOptions:
    settings: dict[str, Any] = {
        "booking_url": BOOKING,
        "now": datetime(2026, 3, 28, 0, 0, tzinfo=PARIS),
        "window_days": 3,
    }
    return MappingOptions(source=source, rpps_table=rpps or {}, **(settings | more))


def as_json(result: MappingResult) -> dict[str, Any]:
    return {
        "feeds": [
            {
                "key": f.key,
                "rpps": f.rpps,
                "rejected": f.rejected,
                "window": [w.isoformat() for w in f.window] if f.window else None,
                "resources": f.resources,
                "slots": f.slots,
            }
            for f in result.feeds
        ],
        "issues": [
            {
                "severity": i.severity,
                "code": i.code,
                "message": i.message,
                "location": i.location,
                "practitioner": i.practitioner,
            }
            for i in result.issues
        ],
    }


def input_bytes(vendor: str, name: str) -> bytes:
    return (DATA / vendor / f"{name}.input.json").read_bytes()


def check_golden(mapper: Mapper, vendor: str, name: str, opts: MappingOptions) -> MappingResult:
    result = mapper.map(input_bytes(vendor, name), opts)
    got = as_json(result)
    expected_file = DATA / vendor / f"{name}.expected.json"
    if os.environ.get("REGEN_GOLDEN") == "1":
        text = json.dumps(got, indent=1, ensure_ascii=False) + "\n"
        expected_file.write_text(text, encoding="utf-8")
    assert got == json.loads(expected_file.read_text(encoding="utf-8"))
    return result


def resources_of(result: MappingResult) -> list[FhirJson]:
    return [r for f in result.feeds for r in (*f.resources, *f.slots)]


def reference_files(vendor: str) -> list[Path]:
    folder = VENDORS / vendor
    if not folder.is_dir():
        pytest.skip(f"{folder} not found (../shared/reference): reference files not mapped")
    return sorted(p for p in folder.iterdir() if p.name != "SOURCES.md")


def check_sensible(result: MappingResult, source: str) -> None:
    """Whatever the input: issues name where, slots belong to a Schedule of their feed, and
    a rejected feed or an unknown RPPS carries an error about that practitioner."""
    for issue in result.issues:
        assert issue.location.startswith(source), issue
        assert issue.message
    for feed in result.feeds:
        assert feed.window is not None and feed.window[0] < feed.window[1]
        schedules = {f"Schedule/{s}" for s in feed.schedule_ids}
        for slot in feed.slots:
            assert slot["schedule"]["reference"] in schedules
            start, end = (datetime.fromisoformat(slot[k]) for k in ("start", "end"))
            assert start < end and feed.window[0] <= start < feed.window[1]
        if feed.rejected or feed.rpps is None:
            assert any(i.severity == "error" and i.practitioner == feed.key for i in result.issues)


# arbitrary JSON, biased towards the keys these mappers read
KEYS = st.sampled_from(
    [
        "booking",
        "availabilities",
        "data",
        "agendas",
        "places",
        "slots",
        "start_date",
        "id",
        "timetable",
        "start_time",
        "agenda_id",
        "items",
        "practitionerId",
        "startDateTime",
        "endDateTime",
        "centerId",
        "hcd",
        "timeStart",
        "timeEnd",
        "medicalStaffID",
        "request",
        "status",
        "businessHours",
        "isAvailable",
        "extendedProps",
        "doctorId",
        "start",
        "end",
        "from",
        "to",
        "profile",
        "reasons",
        "motive",
        "cabinet",
        "date",
        "x",
    ]
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
    | st.sampled_from(
        [
            "2026-03-29T02:30:00.000+02:00",
            "2026-10-25T01:30:00Z",
            "2026-03-29",
            "12",
            "",
            "2026-03-29T02:30:00.000000+0100",
            "9999-12-31T23:59:59Z",
        ]
    )
)
ARBITRARY_JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=30,
)
