"""FHIR JSON's rule for arrays of primitives with extensions: ``null`` holds the place of a
value whose extension, at the same index of ``_name``, stands for it (e.g. a data-absent
address line); a ``null`` with nothing standing for it is an error."""

from __future__ import annotations

from typing import Any

from fhir_server.validation.structure import structure_issues

ABSENT = {
    "extension": [
        {
            "url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
            "valueCode": "unknown",
        }
    ]
}


def location(address: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Location", "address": address}


def test_a_null_standing_for_an_extension_is_fine() -> None:
    address = {"line": [None], "_line": [ABSENT], "city": "Nantes"}
    assert structure_issues(location(address)) == []
    mixed = {"line": ["3 rue des Tilleuls", None], "_line": [None, ABSENT]}
    assert structure_issues(location(mixed)) == []


def test_a_null_with_nothing_standing_for_it_is_refused() -> None:
    for address in (
        {"line": [None]},
        {"line": [None], "_line": [None]},
        {"line": ["x", None], "_line": [ABSENT]},  # the extension is at another index
        {"line": [None], "_line": [{}]},
    ):
        issues = structure_issues(location(address))
        assert issues, address
        assert any("Location.address.line" in e for i in issues for e in i.expression), issues


def test_null_in_arrays_of_objects_stays_refused() -> None:
    issues = structure_issues({"resourceType": "Location", "telecom": [None]})
    assert issues and issues[0].code == "value"
