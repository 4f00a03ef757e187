"""Validator behaviour on self-made profiles (derived from the R4 core snapshots): slicing
rules, extensions, aggregation, invariants fhirpathpy cannot evaluate, messages in French,
odd input."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from fhir_server.validation.packages import Conformance, load_conformance
from fhir_server.validation.validator import Validator
from tests.validation.conftest import CACHE, SAS, errors, need_reference

EX = "http://example.org/fhir/StructureDefinition/"
Json = dict[str, Any]


@pytest.fixture(scope="module")
def store() -> Conformance:
    need_reference()
    conformance = load_conformance(CACHE, [SAS])
    for sd in _profiles(conformance):
        conformance.add_resource(sd)
    return conformance


@pytest.fixture(scope="module")
def v(store: Conformance) -> Validator:
    return Validator(store)


def _derive(store: Conformance, type_name: str, name: str) -> Json:
    base = store.core_type(type_name)
    assert base is not None
    sd: Json = copy.deepcopy(base)
    sd.update(
        url=EX + name,
        id=name,
        name=name,
        derivation="constraint",
        baseDefinition=f"http://hl7.org/fhir/StructureDefinition/{type_name}",
    )
    sd.pop("differential", None)
    return sd


def _element(sd: Json, element_id: str) -> Json:
    for e in sd["snapshot"]["element"]:
        if e["id"] == element_id:
            found: Json = e
            return found
    raise KeyError(element_id)


def _insert_after(sd: Json, element_id: str, new: list[Json]) -> None:
    elements = sd["snapshot"]["element"]
    index = next(i for i, e in enumerate(elements) if e["id"] == element_id)
    elements[index + 1 : index + 1] = new


def _identifier_slice(name: str, system: str, max_: str = "1") -> list[Json]:
    return [
        {
            "id": f"Slot.identifier:{name}",
            "path": "Slot.identifier",
            "sliceName": name,
            "min": 1,
            "max": max_,
            "base": {"path": "Slot.identifier", "min": 0, "max": "*"},
            "type": [{"code": "Identifier"}],
        },
        {
            "id": f"Slot.identifier:{name}.system",
            "path": "Slot.identifier.system",
            "min": 1,
            "max": "1",
            "base": {"path": "Identifier.system", "min": 0, "max": "1"},
            "type": [{"code": "uri"}],
            "fixedUri": system,
        },
    ]


def _profiles(store: Conformance) -> list[Json]:
    closed = _derive(store, "Slot", "ClosedSlot")
    ident = _element(closed, "Slot.identifier")
    ident["slicing"] = {
        "discriminator": [{"type": "value", "path": "system"}],
        "rules": "closed",
        "ordered": True,
    }
    _insert_after(
        closed,
        "Slot.identifier",
        _identifier_slice("first", "urn:first") + _identifier_slice("second", "urn:second"),
    )
    # An invariant fhirpathpy cannot parse and one it cannot evaluate.
    _element(closed, "Slot")["constraint"] += [
        {"key": "bad-1", "severity": "error", "human": "broken", "expression": "comment.((("},
        {
            "key": "bad-2",
            "severity": "error",
            "human": "resolves",
            "expression": "schedule.resolve().exists()",
        },
        {
            "key": "cmt-1",
            "severity": "error",
            "human": "a comment is needed",
            "expression": "comment.exists()",
        },
    ]
    at_end = _derive(store, "Slot", "OpenAtEndSlot")
    _element(at_end, "Slot.identifier")["slicing"] = {
        "discriminator": [{"type": "value", "path": "system"}],
        "rules": "openAtEnd",
    }
    _insert_after(at_end, "Slot.identifier", _identifier_slice("first", "urn:first", "*"))
    exists = _derive(store, "Slot", "ExistsSlot")
    _element(exists, "Slot.identifier")["slicing"] = {
        "discriminator": [{"type": "exists", "path": "period"}],
        "rules": "closed",
    }
    _insert_after(
        exists,
        "Slot.identifier",
        [
            {
                "id": "Slot.identifier:dated",
                "path": "Slot.identifier",
                "sliceName": "dated",
                "min": 0,
                "max": "1",
                "base": {"path": "Slot.identifier", "min": 0, "max": "*"},
                "type": [{"code": "Identifier"}],
            },
            {
                "id": "Slot.identifier:dated.period",
                "path": "Slot.identifier.period",
                "min": 1,
                "max": "1",
                "base": {"path": "Identifier.period", "min": 0, "max": "1"},
                "type": [{"code": "Period"}],
            },
        ],
    )
    bundled = _derive(store, "Slot", "BundledSlot")
    _element(bundled, "Slot.schedule")["type"][0]["aggregation"] = ["bundled"]
    return [closed, at_end, exists, bundled]


def _slot(**extra: Any) -> Json:
    return {
        "resourceType": "Slot",
        "schedule": {"reference": "Schedule/s1"},
        "status": "free",
        "start": "2024-06-12T16:40:00.000+02:00",
        "end": "2024-06-12T17:00:00.000+02:00",
        **extra,
    }


def _found(issues: list[Any]) -> list[tuple[str, str, str]]:
    return [(i.severity, i.code, i.expression[0]) for i in issues]


def test_base_r4_when_no_profile(v: Validator) -> None:
    assert errors(v.validate(_slot())) == []
    issues = v.validate(_slot(status="later", identifier=[{"use": "nickname"}]))
    assert ("error", "code-invalid", "Slot.status") in _found(issues)
    assert ("error", "code-invalid", "Slot.identifier[0].use") in _found(issues)


def test_closed_ordered_slicing(v: Validator) -> None:
    url = EX + "ClosedSlot"
    ok = _slot(comment="x", identifier=[{"system": "urn:first"}, {"system": "urn:second"}])
    assert errors(v.validate(ok, [url])) == []
    wrong_order = _slot(comment="x", identifier=[{"system": "urn:second"}, {"system": "urn:first"}])
    assert ("error", "structure", "Slot.identifier[1]") in _found(v.validate(wrong_order, [url]))
    other = _slot(
        comment="x",
        identifier=[{"system": "urn:first"}, {"system": "urn:second"}, {"system": "urn:x"}],
    )
    assert ("error", "structure", "Slot.identifier[2]") in _found(v.validate(other, [url]))
    missing = _slot(comment="x", identifier=[{"system": "urn:first"}])
    issues = v.validate(missing, [url])
    assert ("error", "required", "Slot.identifier") in _found(issues)
    assert any("second" in i.diagnostics for i in issues)
    too_many = _slot(
        comment="x", identifier=[{"system": "urn:first"}] * 2 + [{"system": "urn:second"}]
    )
    assert ("error", "structure", "Slot.identifier") in _found(v.validate(too_many, [url]))
    absent = _slot(comment="x")
    assert ("error", "required", "Slot.identifier") in _found(v.validate(absent, [url]))


def test_open_at_end(v: Validator) -> None:
    url = EX + "OpenAtEndSlot"
    good = _slot(identifier=[{"system": "urn:first"}, {"system": "urn:other"}])
    assert errors(v.validate(good, [url])) == []
    bad = _slot(identifier=[{"system": "urn:other"}, {"system": "urn:first"}])
    assert ("error", "structure", "Slot.identifier[1]") in _found(v.validate(bad, [url]))


def test_invariants_fhirpath_and_unevaluable(v: Validator) -> None:
    slot = _slot(identifier=[{"system": "urn:first"}, {"system": "urn:second"}])
    issues = v.validate(slot, [EX + "ClosedSlot"])
    found = {
        (i.severity, i.code, i.diagnostics.split(" ")[1])
        for i in issues
        if i.expression == ("Slot",)
    }
    assert ("error", "invariant", "failed:") in found  # cmt-1: no comment
    unevaluable = [i for i in issues if i.code == "not-supported"]
    assert {i.severity for i in unevaluable} == {"warning"}
    assert sorted(i.diagnostics.split(" ")[1] for i in unevaluable) == ["bad-1", "bad-2"]


def test_aggregation_bundled(v: Validator) -> None:
    url = EX + "BundledSlot"
    assert ("error", "structure", "Slot.schedule") in _found(v.validate(_slot(), [url]))
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {
                "fullUrl": "http://x/Slot/a",
                "resource": {**_slot(), "id": "a", "meta": {"profile": [url]}},
            },
            {
                "fullUrl": "http://x/Schedule/s1",
                "resource": {"resourceType": "Schedule", "id": "s1", "actor": [{"display": "x"}]},
            },
        ],
    }
    assert errors(v.validate(bundle)) == []
    bundle["entry"].pop()
    assert ("error", "structure", "Bundle.entry[0].resource.schedule") in _found(v.validate(bundle))


def test_extensions(v: Validator) -> None:
    # Unknown extension: a warning; unknown modifier extension: an error.
    slot = _slot(extension=[{"url": "http://example.org/unknown", "valueString": "x"}])
    assert _found(v.validate(slot)) == [("warning", "extension", "Slot.extension[0]"), *_dom6()]
    slot = _slot(modifierExtension=[{"url": "http://example.org/unknown", "valueString": "x"}])
    assert ("error", "extension", "Slot.modifierExtension[0]") in _found(v.validate(slot))
    # A core extension: value type and context are checked.
    wrong_type = _slot(
        extension=[
            {
                "url": "http://hl7.org/fhir/StructureDefinition/workflow-episodeOfCare",
                "valueString": "x",
            }
        ]
    )
    assert ("error", "structure", "Slot.extension[0].valueString") in _found(v.validate(wrong_type))
    wrong_context = _slot(
        extension=[
            {
                "url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                "valueDateTime": "2020-01-01T10:00:00Z",
            }
        ]
    )
    assert ("error", "extension", "Slot.extension[0]") in _found(v.validate(wrong_context))
    both = _slot(
        extension=[{"url": "http://example.org/u", "valueString": "x", "valueBoolean": True}]
    )
    assert ("error", "structure", "Slot.extension[0].value") in _found(v.validate(both))
    neither = _slot(extension=[{"url": "http://example.org/u"}])
    assert ("error", "invariant", "Slot.extension[0]") in _found(v.validate(neither))


def _dom6() -> list[tuple[str, str, str]]:
    return [("warning", "invariant", "Slot")]


def test_primitive_sidecars(v: Validator) -> None:
    ext = {"extension": [{"url": "http://example.org/u", "valueString": "x"}]}
    assert errors(v.validate(_slot(_comment=ext, comment="c"))) == []
    assert ("error", "structure", "Slot._colour") in _found(v.validate(_slot(_colour=ext)))
    assert ("error", "structure", "Slot._comment") in _found(v.validate(_slot(_comment="text")))


def test_profiles_asked_claimed_and_wrong(v: Validator) -> None:
    slot = _slot(meta={"profile": ["http://example.org/nowhere"]})
    assert ("warning", "not-found", "Slot") in _found(v.validate(slot))
    assert ("error", "not-found", "Slot") in _found(
        v.validate(_slot(), ["http://example.org/nowhere"])
    )
    issues = v.validate(_slot(), ["http://sas.fr/fhir/StructureDefinition/FrScheduleAgregateur"])
    assert ("error", "structure", "Slot") in _found(issues)


@pytest.mark.parametrize(
    ("resource", "expression"),
    [
        ([1, 2], "Resource"),
        ("Slot", "Resource"),
        ({"status": "free"}, "Resource"),
        ({"resourceType": "Unicorn"}, "Unicorn"),
        ({"resourceType": 12}, "Resource"),
    ],
)
def test_not_a_resource(v: Validator, resource: Any, expression: str) -> None:
    issues = v.validate(resource)
    assert issues and issues[0].severity == "error" and issues[0].expression == (expression,)
    assert all(i.code != "exception" for i in issues)


def test_french_and_english(v: Validator) -> None:
    slot = _slot()
    del slot["end"]
    (en,) = errors(v.validate(slot))
    (fr,) = errors(v.validate(slot, lang="fr"))
    assert en.diagnostics == "'end': minimum cardinality is 1, found 0"
    assert fr.diagnostics == "« end » : cardinalité minimale 1, trouvé 0"
    assert en.expression == fr.expression == ("Slot.end",)
    status = v.validate(_slot(status="later"), lang="fr")
    assert any("n'est pas dans le jeu de valeurs" in i.diagnostics for i in status)


def test_contained_without_profile_gets_base_checks(v: Validator) -> None:
    slot = _slot(
        contained=[{"resourceType": "Location", "id": "l1", "status": "gone"}],
        comment="see #l1",
    )
    found = _found(v.validate(slot))
    assert ("error", "code-invalid", "Slot.contained[0].status") in found
    nested = _slot(
        contained=[
            {
                "resourceType": "Location",
                "id": "l1",
                "contained": [{"resourceType": "Location", "id": "l2"}],
            }
        ],
        comment="#l1",
    )
    assert ("error", "invariant", "Slot") in _found(v.validate(nested))  # dom-2


def test_threads_compile_once_and_agree(store: Conformance) -> None:
    """A fresh validator used from several threads at once (first use compiles profiles and
    expands ValueSets) answers as it does alone."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.validation.conftest import example, example_names

    names = example_names()
    fresh = Validator(store)
    with ThreadPoolExecutor(8) as pool:
        parallel = list(pool.map(lambda n: fresh.validate(example(n)), names * 3))
    alone = Validator(store)
    expected = [alone.validate(example(n)) for n in names * 3]
    assert parallel == expected


def test_best_practice_off(store: Conformance) -> None:
    quiet = Validator(store, best_practice=False)
    assert quiet.validate(_slot()) == []
    assert [i.code for i in Validator(store).validate(_slot())] == ["invariant"]  # dom-6


def test_exists_discriminator(v: Validator) -> None:
    url = EX + "ExistsSlot"
    dated = {"system": "urn:x", "period": {"start": "2024-01-01"}}
    assert errors(v.validate(_slot(identifier=[dated]), [url])) == []
    # closed: an identifier without a period matches no slice
    found = _found(v.validate(_slot(identifier=[dated, {"system": "urn:y"}]), [url]))
    assert ("error", "structure", "Slot.identifier[1]") in found
    assert ("error", "structure", "Slot.identifier") in _found(
        v.validate(_slot(identifier=[dated, dated]), [url])
    )
