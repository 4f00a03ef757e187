"""Extraction and index rows: the compiled FHIRPath subset, every R4 and SAS expression on the
published SAS examples, and the rows the SAS examples produce."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fhirpathpy
import pytest
from fhirpathpy.models import models

import profiles
from fhir_server.core.types import SERVED_TYPES
from fhir_server.search.indexing.indexer import index_resource
from fhir_server.search.registry.expressions import compile_expression, is_compiled
from fhir_server.search.registry.packages import load_registry
from fhir_server.search.registry.parameters import Registry

SAS = "ans.fhir.fr.sas#1.1.0"
SERVICE_TYPE_EXT = "http://hl7.org/fhir/5.0/StructureDefinition/extension-Slot.serviceType"
SERVICE_TYPE_REF = f"serviceType.extension.where(url='{SERVICE_TYPE_EXT}').value"
TYPE_CRENEAU = "https://mos.esante.gouv.fr/NOS/TRE_R314-TypeCreneau/FHIR/TRE-R314-TypeCreneau"


@pytest.fixture
def sas_examples(reference_dir: Path) -> Path:
    folder = reference_dir / "fhir-packages" / SAS / "package" / "example"
    if not folder.is_dir():
        pytest.skip(f"{SAS} examples not found at {folder}: SAS extraction checks not run")
    return folder


@pytest.fixture
def sas_registry(sas_examples: Path) -> Registry:
    return load_registry(sas_examples.parents[2])


def _with_contained(resource: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield resource
    yield from resource.get("contained", [])


def _example_resources(folder: Path) -> list[dict[str, Any]]:
    """Every resource of a served type in the examples: files, Bundle entries, contained."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(folder.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        tops = [e["resource"] for e in data.get("entry", []) if "resource" in e]
        for top in tops if data["resourceType"] == "Bundle" else [data]:
            for resource in _with_contained(top):
                key = (resource["resourceType"], resource.get("id", ""))
                if resource["resourceType"] in SERVED_TYPES and key not in found:
                    found[key] = resource
    return list(found.values())


def _example(folder: Path, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))
    return data


def _rows(rows: dict[str, list[dict[str, Any]]], kind: str, param: str) -> list[dict[str, Any]]:
    return [
        {k: v for k, v in r.items() if k != "param"}
        for r in rows.get(kind, [])
        if r["param"] == param
    ]


# --- the compiled subset ---------------------------------------------------------------------


SLOT = {
    "resourceType": "Slot",
    "id": "s1",
    "serviceType": [
        {"coding": [{"system": "http://x/a", "code": "AMB"}]},
        {
            "extension": [
                {"url": SERVICE_TYPE_EXT, "valueReference": {"reference": "HealthcareService/h1"}},
                {"url": "http://x/other", "valueString": "ignored"},
            ]
        },
    ],
    "extension": [{"url": "http://x/when", "valueDateTime": "2024-06-12T10:00:00+02:00"}],
    "schedule": {"reference": "Schedule/sc1"},
    "start": "2024-06-12T16:40:00.000+02:00",
}


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        # relative to the resource (package SearchParameters are written both ways)
        (SERVICE_TYPE_REF, [({"reference": "HealthcareService/h1"}, "Reference")]),
        (f"Slot.{SERVICE_TYPE_REF}", [({"reference": "HealthcareService/h1"}, "Reference")]),
        # FHIRPath's extension('url') shorthand; a where() followed by more steps
        (
            f"Slot.serviceType.extension('{SERVICE_TYPE_EXT}').value.reference",
            [("HealthcareService/h1", "")],
        ),
        # the type of a choice comes from its JSON key; primitives keep their FHIR spelling
        (
            "Slot.extension.where(url='http://x/when').value",
            [("2024-06-12T10:00:00+02:00", "dateTime")],
        ),
        ("Slot.extension.value.as(string)", []),
        ("(Slot.extension.value as dateTime)", [("2024-06-12T10:00:00+02:00", "dateTime")]),
        # typed from the element table; "|" and "." inside a literal do not split the path
        (
            "Slot.start | Slot.schedule",
            [(SLOT["start"], "instant"), (SLOT["schedule"], "Reference")],
        ),
        ("Slot.serviceType.extension.where(url='http://x/a|b.c').value", []),
        ("Slot.schedule.where(resolve() is Schedule)", [(SLOT["schedule"], "Reference")]),
        ("Slot.schedule.where(resolve() is Location)", []),
    ],
)
def test_compiled_paths(expression: str, expected: list[tuple[Any, str]]) -> None:
    assert is_compiled("Slot", expression)
    assert compile_expression("Slot", expression)(SLOT) == expected


def test_other_expressions_fall_back_to_fhirpathpy_with_the_r4_model() -> None:
    expression = f"Slot.serviceType.extension.where(url='{SERVICE_TYPE_EXT}').value.first()"
    assert not is_compiled("Slot", expression)
    # The R4 model is what lets fhirpathpy see "value" as valueReference.
    assert compile_expression("Slot", expression)(SLOT) == [
        ({"reference": "HealthcareService/h1"}, "")
    ]


def test_every_r4_expression_compiles_or_falls_back() -> None:
    fallback = []
    for res_type, params in profiles.r4_search_parameters().items():
        for code, entry in params.items():
            expression = entry.get("expression", "")
            on = "Slot" if res_type == "Resource" else res_type
            compile_expression(on, expression)({"resourceType": on})  # never raises
            if expression and not is_compiled(on, expression):
                fallback.append(f"{res_type}.{code}")
    # Only Bundle's entry[0] (not a served type) needs fhirpathpy.
    assert sorted(fallback) == ["Bundle.composition", "Bundle.message"]


# --- every R4 and SAS parameter on the published SAS examples --------------------------------


def test_every_parameter_runs_on_every_sas_example(
    sas_examples: Path, sas_registry: Registry
) -> None:
    """Compiled extractors agree with fhirpathpy (R4 model) on real data; none raises."""
    model = models["r4"]
    resources = _example_resources(sas_examples)
    assert len({r["resourceType"] for r in resources}) >= 8
    disagree = []
    for resource in resources:
        res_type = resource["resourceType"]
        for code, param in sas_registry.for_type(res_type).items():
            values = compile_expression(res_type, param.expression)(resource)
            if not param.expression or "resolve()" in param.expression:
                continue  # fhirpathpy cannot resolve references without a server
            if is_compiled(res_type, param.expression):
                # fhirpathpy does not take a Slot for a Resource: name the type itself.
                expression = param.expression.replace("Resource.", f"{res_type}.")
                reference = fhirpathpy.evaluate(resource, expression, {}, model)
                if [v for v, _t in values] != reference:
                    disagree.append(
                        f"{res_type}/{resource.get('id')} {code}: {values} != {reference}"
                    )
        index_resource(sas_registry, resource)
    assert not disagree, "\n".join(disagree)


# --- the rows of the SAS examples ------------------------------------------------------------


def test_cpts_slot_rows(sas_examples: Path, sas_registry: Registry) -> None:
    rows = index_resource(sas_registry, _example(sas_examples, "Slot-ExampleSlotCPTS2"))
    # 16:40 Paris summer time is 14:40 UTC; the millisecond precision makes a 1 ms range.
    assert _rows(rows, "date", "start") == [
        {
            "low": datetime(2024, 6, 12, 14, 40, tzinfo=UTC),
            "high": datetime(2024, 6, 12, 14, 40, 0, 1000, tzinfo=UTC),
        }
    ]
    assert _rows(rows, "reference", "schedule") == [
        {"target_type": "Schedule", "target_id": "ExampleSchedule", "url": None}
    ]
    assert _rows(rows, "reference", "service-type-reference") == [
        {
            "target_type": "HealthcareService",
            "target_id": f"ExampleHealthcareServiceCPTS{n}",
            "url": None,
        }
        for n in (1, 2)
    ]
    assert _rows(rows, "token", "status") == [{"system": None, "code": "free", "text": None}]
    assert _rows(rows, "token", "_security") == [
        {"system": TYPE_CRENEAU, "code": code, "text": None} for code in ("PUBLIC", "CPTS")
    ]
    # The coding next to the extension still indexes as an ordinary service-type token.
    codes = {r["code"] for r in _rows(rows, "token", "service-type")}
    assert codes == {"AMB", "604"}


def test_ps_slot_rows(sas_examples: Path, sas_registry: Registry) -> None:
    rows = index_resource(sas_registry, _example(sas_examples, "Slot-ExampleSlotPSIndiv1"))
    assert _rows(rows, "date", "start")[0]["low"] == datetime(2021, 11, 5, 9, 0, tzinfo=UTC)
    assert _rows(rows, "reference", "schedule") == [
        {"target_type": "Schedule", "target_id": "ExampleSchedule1", "url": None}
    ]
    assert _rows(rows, "reference", "service-type-reference") == []
    assert _rows(rows, "token", "_security") == [
        {"system": TYPE_CRENEAU, "code": "PUBLIC", "text": None}
    ]


def test_without_the_sas_package_the_cpts_reference_is_not_indexed(
    sas_examples: Path, tmp_path: Path
) -> None:
    registry = load_registry(tmp_path)  # an empty package cache
    rows = index_resource(registry, _example(sas_examples, "Slot-ExampleSlotCPTS1"))
    assert _rows(rows, "reference", "service-type-reference") == []
    assert _rows(rows, "date", "start")  # the R4 start parameter is still there


def test_practitioner_role_with_a_contained_location(
    sas_examples: Path, sas_registry: Registry
) -> None:
    """References to contained resources are not indexed (see the indexer's docstring)."""
    role = _example(sas_examples, "PractitionerRole-ExamplePractitionerRoleAgregateur")
    assert role["location"] == [{"reference": "#ExampleLocation"}]
    rows = index_resource(sas_registry, role)
    assert _rows(rows, "reference", "location") == []
    assert _rows(rows, "reference", "practitioner") == [
        {"target_type": "Practitioner", "target_id": "ExamplePractitioner", "url": None}
    ]
    # The contained Location's address and identifier belong to no PractitionerRole parameter.
    indexed = json.dumps(rows, default=str)
    assert "Aussonne" not in indexed and "123456789" not in indexed
    assert {r["code"] for r in _rows(rows, "token", "phone")} == {"+33561855977"}


def test_location_position_gives_a_geo_row() -> None:
    registry = Registry(profiles.r4_search_parameters())
    location = {
        "resourceType": "Location",
        "id": "loc1",
        "name": "Centre de consultation Rennes Nord",
        "address": {"city": "RENNES", "postalCode": "35700"},
        "position": {"longitude": -1.6743, "latitude": 48.1362},
    }
    rows = index_resource(registry, location)
    assert _rows(rows, "special", "near") == [{"latitude": 48.1362, "longitude": -1.6743}]
    assert {"norm": "rennes", "value": "RENNES"} in _rows(rows, "string", "address-city")
