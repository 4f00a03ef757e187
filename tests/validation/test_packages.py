"""Loading conformance resources from a package cache: index by URL and url|version,
dependencies, loose folders, missing packages reported (not raised)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fhir_server.validation.packages import load_conformance
from tests.validation.conftest import CACHE, NOS, SAS, need_reference, write_package


def _vs(id_: str, url: str, version: str = "1") -> dict[str, object]:
    return {"resourceType": "ValueSet", "id": id_, "url": url, "version": version}


def test_index_by_url_and_version(tmp_path: Path) -> None:
    write_package(tmp_path, "a.b", "1.0.0", [_vs("x", "http://ex/vs/x", "2")])
    store = load_conformance(tmp_path, ["a.b#1.0.0"], core=False)
    assert store.value_set("http://ex/vs/x")["id"] == "x"  # type: ignore[index]
    assert store.value_set("http://ex/vs/x|2")["id"] == "x"  # type: ignore[index]
    # Another version than the one loaded: the loaded one, rather than nothing.
    assert store.value_set("http://ex/vs/x|9")["id"] == "x"  # type: ignore[index]
    assert store.value_set("http://ex/vs/unknown") is None
    assert [p.key for p in store.packages] == ["a.b#1.0.0"]
    assert store.source_of("ValueSet", "http://ex/vs/x") == "a.b#1.0.0"


def test_first_package_wins_and_dependencies_follow(tmp_path: Path) -> None:
    write_package(tmp_path, "top", "1", [_vs("x", "http://ex/vs/x")], {"dep": "2"})
    write_package(tmp_path, "dep", "2", [_vs("x2", "http://ex/vs/x"), _vs("y", "http://ex/vs/y")])
    store = load_conformance(tmp_path, [("top", "1")], core=False)
    assert [p.key for p in store.packages] == ["top#1", "dep#2"]
    assert store.value_set("http://ex/vs/x")["id"] == "x"  # type: ignore[index]
    assert store.value_set("http://ex/vs/y")["id"] == "y"  # type: ignore[index]


def test_missing_package_is_reported_with_how_to_install(tmp_path: Path) -> None:
    write_package(tmp_path, "top", "1", [], {"gone.dep": "3.0.0"})
    (tmp_path / "other#0.9" / "package").mkdir(parents=True)
    store = load_conformance(tmp_path, ["top#1", "other#1.0"], core=True)
    missing = {m.key: m for m in store.missing}
    assert set(missing) == {"other#1.0", "gone.dep#3.0.0", "hl7.fhir.r4.core#4.0.1"}
    assert missing["other#1.0"].other_versions == ("0.9",)
    assert missing["gone.dep#3.0.0"].required_by == "top#1"
    text = missing["other#1.0"].message()
    assert "other#1.0" in text and "fhir-server packages install other#1.0" in text
    assert "versions present: 0.9" in text
    assert "introuvable" in missing["other#1.0"].message("fr")
    assert not store.has_core


def test_loose_folder_and_memory_resources(tmp_path: Path) -> None:
    folder = tmp_path / "terms"
    folder.mkdir()
    (folder / "CodeSystem-cs.json").write_text(
        json.dumps({"resourceType": "CodeSystem", "id": "cs", "url": "http://ex/cs"})
    )
    (folder / "notes.json").write_text("[1, 2]")  # not a resource: skipped
    (folder / "broken.json").write_text("{")  # unreadable: skipped
    store = load_conformance(tmp_path / "cache", [], [folder], core=False)
    assert store.code_system("http://ex/cs") is not None
    store.add_resource(_vs("m", "http://ex/vs/m"))
    assert store.value_set("http://ex/vs/m")["id"] == "m"  # type: ignore[index]
    with pytest.raises(ValueError):
        store.add_resource({"resourceType": "Patient"})


def test_reference_cache_sas_and_core() -> None:
    need_reference()
    store = load_conformance(CACHE, [SAS], [NOS])
    keys = [p.key for p in store.packages]
    assert keys == [SAS, "hl7.fhir.r4.core#4.0.1"]
    assert store.has_core
    assert store.structure_definition("http://sas.fr/fhir/StructureDefinition/FrSlotAgregateur")
    assert store.value_set(
        "https://mos.esante.gouv.fr/NOS/JDV_J165-TypeCreneau-SAS/FHIR/JDV-J165-TypeCreneau-SAS"
    )
    # SAS 1.1.0 depends on FR Core, NOS, terminology and extensions packages that this cache
    # does not hold: reported, not fatal.
    missing = {m.key for m in store.missing}
    assert "hl7.fhir.fr.core#1.1.0" in missing
    assert all(m.required_by == SAS for m in store.missing)


def test_manifest_specs_are_accepted() -> None:
    """The server's manifest (profiles/packages.toml, read by search.packages) names the
    packages; validation only needs their names and versions."""
    need_reference()
    from fhir_server.package_cache import read_manifest

    store = load_conformance(CACHE, read_manifest(), [NOS])
    assert [p.key for p in store.packages][:2] == [SAS, "hl7.fhir.r4.core#4.0.1"]


def test_validator_without_core_says_so(tmp_path: Path) -> None:
    from fhir_server.validation.validator import Validator

    store = load_conformance(tmp_path, [], core=True)
    (issue,) = Validator(store).validate({"resourceType": "Slot"})
    assert (issue.severity, issue.code) == ("error", "not-supported")
    assert "R4 core" in issue.diagnostics


def test_missing_packages_are_one_short_line_each(tmp_path: Path) -> None:
    """Start-up logs: what is missing and for whom, one line per package, then one hint."""
    from structlog.testing import capture_logs

    from fhir_server.validation.packages import log_missing_packages

    write_package(tmp_path, "top", "1", [], {"gone.a": "1.0.0", "gone.b": "2.0.0"})
    store = load_conformance(tmp_path, ["top#1"], core=False)
    with capture_logs() as logs:
        log_missing_packages(store)
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert [(e["package"], e["needed_by"]) for e in warnings] == [
        ("gone.a#1.0.0", "top#1"),
        ("gone.b#2.0.0", "top#1"),
    ]
    assert all(set(e) == {"event", "log_level", "package", "needed_by"} for e in warnings)
    assert all(len(e["event"]) < 80 for e in warnings)
    [hint] = [e for e in logs if e["log_level"] == "info"]
    assert "fhir-server packages install" in hint["event"]
    with capture_logs() as quiet:
        log_missing_packages(load_conformance(tmp_path, [], core=False))
    assert quiet == []
