"""The SAS resources the mappers emit validate against the SAS profiles, and their ids are
stable and valid FHIR ids."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from mappings import sas
from tests.mappings.conftest import validation_errors

PARIS = ZoneInfo("Europe/Paris")
FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def test_a_practitioners_offer_validates(validator: Any) -> None:
    start = datetime(2026, 6, 12, 10, 0, tzinfo=PARIS)
    resources = [
        sas.practitioner("agenda", "p-17", "10000000015", "Lefèvre", "Hélène"),
        sas.practitioner_role(
            "agenda",
            "p-17",
            "cab-2",
            place_name="Cabinet des Tilleuls",
            address={"line": ["3 rue des Tilleuls"], "city": "Nantes", "postalCode": "44000"},
            position=(47.21, -1.55),
            structure_id="449999999",
            phone="0299999999",
        ),
        sas.schedule("agenda", "p-17", "cab-2"),
        sas.slot(
            "agenda",
            sas.schedule_id("agenda", "p-17", "cab-2"),
            "s-1",
            start,
            start + timedelta(minutes=20),
            PARIS,
            slot_types=("PUBLIC", "SNP"),
            consultation=("AMB", "VR"),
            motive="Consultation de médecine générale",
            booking_url="https://rdv.example.org/book?practice=cab-2",
        ),
    ]
    for resource in resources:
        assert validation_errors(validator, resource) == [], resource["resourceType"]
    slot = resources[-1]
    assert slot["start"] == "2026-06-12T10:00:00.000+02:00"
    assert slot["comment"].startswith("https://rdv.example.org/book?practice=cab-2&slot=")
    assert slot["schedule"] == {"reference": f"Schedule/{resources[2]['id']}"}
    assert resources[0]["identifier"][0]["value"] == "810000000015"


@given(st.text(min_size=1, max_size=300), st.text(max_size=300))
def test_ids_are_valid_and_distinct(a: str, b: str) -> None:
    first, second = sas.stable_id("v", a), sas.stable_id("v", b)
    assert FHIR_ID.fullmatch(first) and FHIR_ID.fullmatch(second)
    assert (first == second) == (a == b)
    assert sas.stable_id("v", a) == first  # stable
