"""The native invariants agree with fhirpathpy evaluating the R4 expression they replace,
on sample values (where fhirpathpy can evaluate it)."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_server.validation.compiled import Element
from fhir_server.validation.context import Frame
from fhir_server.validation.invariants import compile_constraint, fhirpath_check
from fhir_server.validation.natives import NATIVE

E = {"fullUrl": "http://x/Slot/1", "resource": {"resourceType": "Slot", "id": "1"}}
SAMPLES: dict[str, tuple[str, list[Any]]] = {
    "bdl-1": (
        "Bundle",
        [{"type": "searchset", "total": 1}, {"type": "batch", "total": 1}, {"type": "batch"}],
    ),
    "bdl-2": (
        "Bundle",
        [
            {"type": "batch", "entry": [{"search": {"mode": "match"}}]},
            {"type": "searchset", "entry": [{"search": {"mode": "match"}}]},
        ],
    ),
    "bdl-3": (
        "Bundle",
        [
            {"type": "batch", "entry": [{"request": {"url": "x"}}]},
            {"type": "batch", "entry": [E]},
            {"type": "searchset", "entry": [E]},
        ],
    ),
    "bdl-4": (
        "Bundle",
        [
            {"type": "batch-response", "entry": [E]},
            {"type": "searchset", "entry": [{"response": {"status": "200"}}]},
            {"type": "searchset", "entry": [E]},
        ],
    ),
    "bdl-5": ("Bundle.entry", [{"fullUrl": "x"}, E, {"request": {"url": "x"}}]),
    "bdl-7": (
        "Bundle",
        [
            {"type": "searchset", "entry": [E, E]},
            {"type": "history", "entry": [E, E]},
            {"type": "searchset", "entry": [E]},
        ],
    ),
    "bdl-8": ("Bundle.entry", [{"fullUrl": "http://x/Slot/1/_history/2"}, E]),
    "bdl-9": (
        "Bundle",
        [
            {"type": "document"},
            {"type": "document", "identifier": {"system": "s", "value": "v"}},
            {"type": "batch"},
        ],
    ),
    "bdl-10": (
        "Bundle",
        [{"type": "document"}, {"type": "document", "timestamp": "2020-01-01T00:00:00Z"}],
    ),
    "bdl-11": (
        "Bundle",
        [
            {"type": "document", "entry": [E]},
            {"type": "document", "entry": [{"resource": {"resourceType": "Composition"}}]},
        ],
    ),
    "bdl-12": (
        "Bundle",
        [
            {"type": "message", "entry": [E]},
            {"type": "message", "entry": [{"resource": {"resourceType": "MessageHeader"}}]},
        ],
    ),
    "cpt-2": (
        "ContactPoint",
        [{"value": "1"}, {"value": "1", "system": "phone"}, {"system": "email"}],
    ),
    "att-1": ("Attachment", [{"data": "AAAA"}, {"data": "AAAA", "contentType": "x"}]),
    "org-1": (
        "Organization",
        [{"resourceType": "Organization"}, {"resourceType": "Organization", "name": "n"}],
    ),
    "per-1": (
        "Period",
        [
            {"start": "2020-01-02", "end": "2020-01-01"},
            {"start": "2020-01-01T10:00:00Z", "end": "2020-01-01T11:00:00Z"},
            {"start": "2020-01-01"},
        ],
    ),
    "app-1": ("Appointment.participant", [{"status": "accepted"}, {"actor": {"display": "x"}}]),
    "app-2": (
        "Appointment",
        [
            {"resourceType": "Appointment", "start": "2020-01-01T10:00:00Z"},
            {"resourceType": "Appointment"},
        ],
    ),
    "app-3": (
        "Appointment",
        [
            {"resourceType": "Appointment", "status": "booked"},
            {"resourceType": "Appointment", "status": "proposed"},
        ],
    ),
    "app-4": (
        "Appointment",
        [
            {"resourceType": "Appointment", "status": "booked", "cancelationReason": {"text": "x"}},
            {
                "resourceType": "Appointment",
                "status": "cancelled",
                "cancelationReason": {"text": "x"},
            },
        ],
    ),
    "ext-1": (
        "Extension",
        [
            {"url": "u"},
            {"url": "u", "valueString": "x"},
            {"url": "u", "valueString": "x", "extension": [{"url": "v", "valueString": "y"}]},
        ],
    ),
    "dom-2": (
        "Slot",
        [
            {
                "resourceType": "Slot",
                "contained": [
                    {"resourceType": "Location", "contained": [{"resourceType": "Location"}]}
                ],
            }
        ],
    ),
    "dom-4": (
        "Slot",
        [
            {
                "resourceType": "Slot",
                "contained": [{"resourceType": "Location", "meta": {"versionId": "1"}}],
            }
        ],
    ),
    "dom-5": (
        "Slot",
        [
            {
                "resourceType": "Slot",
                "contained": [{"resourceType": "Location", "meta": {"security": [{"code": "R"}]}}],
            }
        ],
    ),
    "dom-6": (
        "Slot",
        [
            {"resourceType": "Slot"},
            {"resourceType": "Slot", "text": {"status": "generated", "div": "<div/>"}},
        ],
    ),
}
EXPRESSIONS: dict[str, str] = {}


def _keys() -> dict[str, str]:
    """key -> R4 expression of the natives, from the function names (``_bdl_1`` -> bdl-1)."""
    out = {}
    for expression, check in NATIVE.items():
        key = check.__name__.strip("_").replace("_", "-")
        out.setdefault(key, expression)
    return out


@pytest.mark.parametrize("key", sorted(SAMPLES))
def test_native_agrees_with_fhirpath(key: str) -> None:
    expression = _keys()[key]
    path, samples = SAMPLES[key]
    element = Element(path, path, path.rsplit(".", 1)[-1], False, 0, 1, False, ())
    slow = fhirpath_check(expression)
    fast = NATIVE[expression]
    compared = 0
    for sample in samples:
        frame = Frame(sample, sample, None)  # type: ignore[arg-type]
        expected = slow(sample, frame, element)
        if expected is None:
            continue
        assert fast(sample, frame, element) is expected, (key, sample)
        compared += 1
    assert compared, f"fhirpathpy evaluated no sample of {key}"


def test_every_native_is_sampled_or_known() -> None:
    # ele-1 is built in the walk; dom-3, ref-1 and txt-* need container context or XHTML.
    assert set(_keys()) - set(SAMPLES) == {"ele-1", "dom-3", "ref-1", "always"}


def test_compile_constraint() -> None:
    assert (
        compile_constraint(
            {"key": "ele-1", "expression": "hasValue() or (children().count() > id.count())"}
        )
        is None
    )
    best = compile_constraint(
        {
            "key": "x-1",
            "severity": "error",
            "expression": "comment.exists()",
            "extension": [
                {
                    "url": "http://hl7.org/fhir/StructureDefinition/elementdefinition-bestpractice",
                    "valueBoolean": True,
                }
            ],
        }
    )
    assert best is not None and best.severity == "warning" and best.best_practice
    assert compile_constraint({"key": "x"}) is None
