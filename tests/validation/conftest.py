"""Validation fixtures: the reference package cache (skipped when absent) and one validator
per test session (loading and compiling take about a second)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from fhir_server.validation.packages import Conformance, load_conformance
from tests.conftest import REFERENCE

if TYPE_CHECKING:
    from fhir_server.validation.validator import Validator

SAS = "ans.fhir.fr.sas#1.1.0"
CACHE = REFERENCE / "fhir-packages"
NOS = REFERENCE / "nos"
EXAMPLES = CACHE / SAS / "package" / "example"


def need_reference() -> None:
    if not (CACHE / SAS / "package").is_dir() or not (CACHE / "hl7.fhir.r4.core#4.0.1").is_dir():
        pytest.skip(
            f"{SAS} and hl7.fhir.r4.core#4.0.1 not found in {CACHE} (../shared/reference): "
            "profile validation tests not run"
        )


@pytest.fixture(scope="session")
def conformance() -> Conformance:
    need_reference()
    return load_conformance(CACHE, [SAS], [NOS])


@pytest.fixture(scope="session")
def validator(conformance: Conformance) -> Validator:
    from fhir_server.validation.supplements import sas_supplements
    from fhir_server.validation.validator import Validator

    v = Validator(conformance, supplements=sas_supplements())
    v.precompile()
    return v


@pytest.fixture(scope="session")
def pure_validator(conformance: Conformance) -> Validator:
    """Without the SAS test-kit supplements: the profiles only."""
    from fhir_server.validation.validator import Validator

    return Validator(conformance)


def example(name: str) -> dict[str, Any]:
    need_reference()
    data: dict[str, Any] = json.loads((EXAMPLES / f"{name}.json").read_text(encoding="utf-8"))
    return data


def example_names() -> list[str]:
    if not EXAMPLES.is_dir():
        return []
    return sorted(p.stem for p in EXAMPLES.glob("*.json"))


def errors(issues: list[Any]) -> list[Any]:
    return [i for i in issues if i.severity in ("error", "fatal")]


def write_package(
    cache: Path,
    name: str,
    version: str,
    resources: list[dict[str, Any]],
    dependencies: dict[str, str] | None = None,
) -> Path:
    folder = cache / f"{name}#{version}" / "package"
    folder.mkdir(parents=True)
    (folder / "package.json").write_text(
        json.dumps({"name": name, "version": version, "dependencies": dependencies or {}})
    )
    for r in resources:
        (folder / f"{r['resourceType']}-{r['id']}.json").write_text(json.dumps(r))
    return folder
