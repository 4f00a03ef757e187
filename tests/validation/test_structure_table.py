"""``profiles/r4_elements.json`` agrees with the validator's terminology and the R4 models.

The structure walk trusts the generated table for required elements and enumerated codes;
these tests check the table against two independent sources: the profile validator's
ValueSet expansions, and the ``fhir.resources`` R4B models it replaced (same elements,
same required ones, except what R4B changed: ``Extension.value[x]`` lost ``Meta``).
"""

from __future__ import annotations

import json
import typing
from typing import Any

import pytest

import profiles
from fhir_server.validation.packages import Conformance
from fhir_server.validation.terminology import Terminology
from tests.validation.conftest import CACHE

CORE = CACHE / "hl7.fhir.r4.core#4.0.1" / "package"
TYPES: dict[str, dict[str, Any]] = profiles.r4_elements()["types"]
CODED = [(t, p) for t, table in TYPES.items() for p, e in table.items() if "codes" in e]
R4_ONLY = {("Extension", "valueMeta")}


def _binding(type_name: str, path: str) -> str:
    sd = json.loads((CORE / f"StructureDefinition-{type_name}.json").read_text(encoding="utf-8"))
    for element in sd["snapshot"]["element"]:
        if element["path"] == f"{type_name}.{path}":
            url: str = element["binding"]["valueSet"]
            return url.split("|", 1)[0]
    raise AssertionError(f"{type_name}.{path} not in the StructureDefinition")


def test_some_codes_are_listed() -> None:
    assert TYPES["Slot"]["status"]["codes"] == [
        "busy",
        "free",
        "busy-unavailable",
        "busy-tentative",
        "entered-in-error",
    ]
    assert len(CODED) > 30


@pytest.mark.parametrize(("type_name", "path"), CODED, ids=[f"{t}.{p}" for t, p in CODED])
def test_codes_match_the_validator_expansion(
    conformance: Conformance, type_name: str, path: str
) -> None:
    expansion = Terminology(conformance).expansion(_binding(type_name, path))
    assert expansion is not None and not expansion.open_systems
    expanded = set().union(*expansion.codes.values())
    assert set(TYPES[type_name][path]["codes"]) == expanded


def _fields(model: Any) -> dict[str, Any]:
    return {f.alias or name: f for name, f in model.model_fields.items()}


def _model_of(field: Any) -> Any:
    """The model class of a complex or backbone field, if any."""
    for arg in typing.get_args(field.annotation) or (field.annotation,):
        for inner in typing.get_args(arg) or (arg,):
            if hasattr(inner, "get_model_klass"):
                return inner.get_model_klass()
            if isinstance(inner, type) and hasattr(inner, "model_fields"):
                return inner
    return None


def test_table_matches_the_r4b_models() -> None:
    from fhir.resources.R4B import get_fhir_model_class

    compared, problems = 0, []
    for type_name, table in TYPES.items():
        classes = {"": get_fhir_model_class(type_name)}
        for path, info in table.items():
            parent, _, name = path.rpartition(".")
            model = classes.get(parent)
            if model is None or "ref" in info:
                continue
            fields = _fields(model)
            if name.endswith("[x]"):
                keys = [name[:-3] + t[:1].upper() + t[1:] for t in info["types"]]
                present = [k for k in keys if k in fields]
                problems += [
                    (type_name, k)
                    for k in keys
                    if k not in fields and (type_name, k) not in R4_ONLY
                ]
                required = any(
                    (fields[k].json_schema_extra or {}).get("one_of_many_required") for k in present
                )
            elif name not in fields:
                problems.append((type_name, path))
                continue
            else:
                field = fields[name]
                extra = field.json_schema_extra or {}
                required = field.is_required() or bool(extra.get("element_required"))
                if (inner := _model_of(field)) is not None:
                    classes[path] = inner
            compared += 1
            if required != (info.get("min", 0) >= 1):
                problems.append((type_name, f"{path} min"))
    assert problems == []
    assert compared > 500
