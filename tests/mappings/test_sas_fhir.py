"""A vendor's SAS FHIR answer normalised: our ids and references, our profiles, the search
window of the self link, the ANS guide's own example Bundles."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from mappings import registry, sas
from mappings.contract import MappingOptions
from tests.mappings.conftest import validation_errors

EXAMPLES = (
    Path(__file__).parents[3]
    / "shared"
    / "reference"
    / "fhir-packages"
    / "ans.fhir.fr.sas#1.1.0"
    / "package"
    / "example"
)


def test_the_guides_ps_indiv_example_normalises_and_validates(validator: Any) -> None:
    path = EXAMPLES / "Bundle-ExampleBundlePSIndiv.json"
    if not path.is_file():
        pytest.skip("../shared/reference/fhir-packages is absent")
    result = registry.mapper("sas-fhir").map(path.read_bytes(), MappingOptions(vendor="acme"))
    assert [(f.key, f.rpps) for f in result.feeds] == [
        ("ExamplePractitioner2", "10100050075"),
        ("ExamplePractitioner3", "10002673899"),
    ]
    assert result.issues == []
    ids = set()
    for feed in result.feeds:
        assert feed.window == (
            datetime(2021, 11, 4, 14, 19, 35, 760000, tzinfo=UTC),
            datetime(2021, 11, 7, tzinfo=UTC),
        )
        for resource in [*feed.resources, *feed.slots]:
            assert resource["id"].startswith("acme-")
            assert validation_errors(validator, resource) == []
            ids.add(f"{resource['resourceType']}/{resource['id']}")
        for slot in feed.slots:
            assert slot["schedule"]["reference"] in ids
            assert slot["identifier"] == [
                sas.vendor_identifier("acme", "slot", slot["identifier"][0]["value"])
            ]


def test_the_sos_example_has_no_practitioner_feed() -> None:
    path = EXAMPLES / "Bundle-ExampleBundleAgregateurSOS.json"
    if not path.is_file():
        pytest.skip("../shared/reference/fhir-packages is absent")
    result = registry.mapper("sas-fhir").map(path.read_bytes(), MappingOptions())
    assert result.feeds == [] and all(i.code == "not-found" for i in result.issues)


def test_without_a_search_window_the_default_one_is_used() -> None:
    now = datetime(2026, 6, 15, tzinfo=UTC)
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [
            {
                "resource": {
                    "resourceType": "Practitioner",
                    "id": "p",
                    "identifier": [{"system": sas.IDNPS_SYSTEM, "value": "810000000015"}],
                }
            }
        ],
    }
    (feed,) = registry.mapper("sas-fhir").map(orjson.dumps(bundle), MappingOptions(now=now)).feeds
    assert feed.window == (now, datetime(2026, 6, 17, tzinfo=UTC)) and feed.slots == []


def test_not_a_bundle_is_one_issue() -> None:
    result = registry.mapper("sas-fhir").map(b'{"resourceType": "Slot"}', MappingOptions())
    assert result.feeds == [] and result.issues[0].message == "not a FHIR Bundle"


def test_odd_shapes_inside_resources_are_issues_not_crashes() -> None:
    bundle = {
        "resourceType": "Bundle",
        "entry": [
            {
                "resource": {
                    "resourceType": "Practitioner",
                    "id": "p",
                    "identifier": [{"system": sas.IDNPS_SYSTEM, "value": "810000000015"}],
                }
            },
            {
                "resource": {
                    "resourceType": "Schedule",
                    "id": "s",
                    "actor": [{"reference": "Practitioner/p"}],
                }
            },
            {
                "resource": {
                    "resourceType": "Slot",
                    "id": "x",
                    "meta": ["odd"],
                    "status": "free",
                    "schedule": {"reference": "Schedule/s"},
                    "start": "2026-06-15T10:00:00+02:00",
                    "end": "2026-06-15T10:15:00+02:00",
                }
            },
            {
                "resource": {
                    "resourceType": "Slot",
                    "id": "y",
                    "status": "free",
                    "schedule": {"reference": "Schedule/s"},
                    "start": "2026-06-15T11:00:00+02:00",
                    "end": "2026-06-15T10:15:00+02:00",
                }
            },
        ],
    }
    result = registry.mapper("sas-fhir").map(orjson.dumps(bundle), MappingOptions())
    (feed,) = result.feeds
    assert feed.rejected and [s["id"] for s in feed.slots] == ["sas-fhir-slot-x"]
    assert [i.location for i in result.issues] == ["input#/entry/3/resource/end"]


def test_a_resource_type_that_is_not_a_string_is_skipped() -> None:
    bundle = {"resourceType": "Bundle", "entry": [{"resource": {"resourceType": []}}]}
    result = registry.mapper("sas-fhir").map(orjson.dumps(bundle), MappingOptions())
    assert result.feeds == [] and result.issues == []
