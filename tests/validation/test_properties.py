"""Validating never raises and never fails inside: on any JSON value, on resource-shaped
objects claiming SAS profiles, and on SAS examples with one value replaced by junk."""

from __future__ import annotations

import copy
import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fhir_server.validation.validator import Validator
from tests.validation.conftest import example, example_names

SAS = "http://sas.fr/fhir/StructureDefinition/"
IG = "https://interop.esante.gouv.fr/ig/fhir/sas/StructureDefinition/"
PROFILES = [
    SAS + "FrSlotAgregateur",
    SAS + "FrPractitionerRoleExerciceAgregateur",
    SAS + "BundleAgregateur",
    SAS + "FrAppointmentSAS",
    IG + "sas-cpts-slot-aggregator",
    IG + "sas-sos-bundle-aggregator",
    IG + "FrPractitionerRegul",
    "http://example.org/unknown",
]
TYPES = [
    "Slot",
    "Schedule",
    "Practitioner",
    "PractitionerRole",
    "Location",
    "Bundle",
    "Appointment",
    "Patient",
]
KEYS = [
    "id",
    "meta",
    "status",
    "start",
    "end",
    "schedule",
    "serviceType",
    "identifier",
    "extension",
    "modifierExtension",
    "contained",
    "entry",
    "resource",
    "reference",
    "coding",
    "system",
    "code",
    "value",
    "valueString",
    "valueReference",
    "url",
    "profile",
    "security",
    "_start",
    "address",
    "postalCode",
    "location",
    "actor",
    "type",
    "link",
    "text",
    "div",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(
        [
            "free",
            "busy",
            "#x",
            "Schedule/s1",
            "urn:oid:1.2.250.1.71.4.2.1",
            "2024-06-12T16:40:00.000+02:00",
        ]
    ),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=6)), inner, max_size=5),
    ),
    max_leaves=25,
)


@st.composite
def resources(draw: st.DrawFn) -> dict[str, Any]:
    out: dict[str, Any] = draw(st.dictionaries(st.sampled_from(KEYS), json_values, max_size=6))
    out["resourceType"] = draw(st.sampled_from(TYPES))
    if draw(st.booleans()):
        out["meta"] = {"profile": [draw(st.sampled_from(PROFILES))]}
    return out


def _check(validator: Validator, value: Any) -> None:
    issues = validator.validate(value)
    assert isinstance(issues, list)
    internal = [i.to_json() for i in issues if i.code == "exception"]
    assert internal == []


SETTINGS = settings(
    max_examples=int(os.environ.get("VALIDATION_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@SETTINGS
@given(value=json_values)
def test_any_json_value(validator: Validator, value: Any) -> None:
    _check(validator, value)


@SETTINGS
@given(resource=resources())
def test_resource_shaped_objects(validator: Validator, resource: dict[str, Any]) -> None:
    _check(validator, resource)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


@SETTINGS
@given(data=st.data())
def test_examples_with_junk(validator: Validator, data: st.DataObject) -> None:
    names = example_names()
    if not names:
        return
    resource = copy.deepcopy(example(data.draw(st.sampled_from(names))))
    for _ in range(data.draw(st.integers(1, 3))):
        paths = _paths(resource)
        path = data.draw(st.sampled_from(paths))
        parent: Any = resource
        for part in path[:-1]:
            parent = parent[part]
        parent[path[-1]] = data.draw(json_values)
    _check(validator, resource)
