"""Slot/Appointment instants in search answers: the kit's form, Paris offsets."""

from __future__ import annotations

import orjson

from fhir_server.core.fhirtime import PARIS
from fhir_server.interactions import instants


def slot(start: str, end: str) -> bytes:
    return orjson.dumps({"resourceType": "Slot", "start": start, "end": end, "status": "free"})


def test_kit_form_in_paris_offset_is_served_as_stored() -> None:
    summer = slot("2026-06-12T16:20:00.000+02:00", "2026-06-12T16:40:00.000+02:00")
    winter = slot("2026-12-12T16:20:00.000+01:00", "2026-12-12T16:40:00.000+01:00")
    assert instants.normalised(summer, "Slot", PARIS) is None
    assert instants.normalised(winter, "Slot", PARIS) is None
    assert instants.normalised(summer, "Practitioner", PARIS) is None


def test_other_forms_and_wrong_offsets_are_rewritten() -> None:
    cases = {
        ("2026-06-12T14:20:00Z", "2026-06-12T14:40:00Z"): (
            "2026-06-12T16:20:00.000+02:00",
            "2026-06-12T16:40:00.000+02:00",
        ),
        # right form, but +01:00 is not Paris in June
        ("2026-06-12T15:20:00.000+01:00", "2026-06-12T16:40:00.000+02:00"): (
            "2026-06-12T16:20:00.000+02:00",
            "2026-06-12T16:40:00.000+02:00",
        ),
        # seconds only, then the DST change night (03:00 CEST is 01:00 UTC)
        ("2026-03-29T01:00:00+00:00", "2026-03-29T03:30:00+02:00"): (
            "2026-03-29T03:00:00.000+02:00",
            "2026-03-29T03:30:00.000+02:00",
        ),
    }
    for (start, end), expected in cases.items():
        out = instants.normalised(slot(start, end), "Appointment", PARIS)
        assert out is not None, start
        assert (out["start"], out["end"]) == expected


def test_every_start_and_end_is_checked_even_nested() -> None:
    body = orjson.loads(slot("2026-06-12T16:20:00.000+02:00", "2026-06-12T16:40:00.000+02:00"))
    body["extension"] = [{"url": "x", "valuePeriod": {"start": "2026-06-12T14:20:00Z"}}]
    assert instants.needs_rewrite(orjson.dumps(body), PARIS)
    assert not instants.needs_rewrite(b'{"resourceType":"Slot"}', PARIS)
    assert instants.needs_rewrite(b'{"start":"2026-06-12T16:20:00.000+02:00","end":"x', PARIS)
