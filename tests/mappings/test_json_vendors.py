"""What every JSON vendor mapping must do with its golden input: produce resources that
validate against the SAS profiles, and the same resources when mapped twice (one test for
all of them, parametrised by the format's own test module: its MAPPER, OPTIONS, input)."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from tests.mappings import (
    test_avecmondoc,
    test_doctolib,
    test_keldoc,
    test_maiia,
    test_ordoclic,
)
from tests.mappings.conftest import validation_errors
from tests.mappings.golden_json import input_bytes, resources_of

# (vendor, golden input name, the test module holding its MAPPER and OPTIONS)
CASES: list[tuple[str, str, ModuleType]] = [
    ("avecmondoc", "week", test_avecmondoc),
    ("doctolib", "two-agendas", test_doctolib),
    ("keldoc", "timetable", test_keldoc),
    ("maiia", "center", test_maiia),
    ("ordoclic", "entity", test_ordoclic),
]
IDS = [vendor for vendor, _, _ in CASES]


@pytest.mark.parametrize(("vendor", "name", "module"), CASES, ids=IDS)
def test_output_validates_against_the_sas_profiles(
    vendor: str, name: str, module: ModuleType, validator: Any
) -> None:
    result = module.MAPPER.map(input_bytes(vendor, name), module.OPTIONS)
    resources = resources_of(result)
    assert resources
    for resource in resources:
        assert validation_errors(validator, resource) == [], resource["id"]


@pytest.mark.parametrize(("vendor", "name", "module"), CASES, ids=IDS)
def test_mapping_twice_gives_the_same_resources(vendor: str, name: str, module: ModuleType) -> None:
    data = input_bytes(vendor, name)
    first = module.MAPPER.map(data, module.OPTIONS)
    second = module.MAPPER.map(data, module.OPTIONS)
    assert resources_of(first) == resources_of(second)
