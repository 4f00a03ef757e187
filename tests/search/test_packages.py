"""FHIR packages from the package cache: the manifest, the SAS search parameters, a missing
package (logged, the server still starts), and a self-written package with odd definitions."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from auth.policy import Policy
from fhir_server.app import create_app, make_context
from fhir_server.core.types import SERVED_TYPES
from fhir_server.package_cache import MANIFEST, PackageSpec, read_manifest
from fhir_server.search.registry.packages import load_registry, registry_for
from fhir_server.settings import Settings

SAS = "ans.fhir.fr.sas#1.1.0"
SAS_SP = "https://interop.esante.gouv.fr/ig/fhir/sas/SearchParameter"
EXT = "http://hl7.org/fhir/5.0/StructureDefinition/extension-Slot.serviceType"


@pytest.fixture
def package_cache(reference_dir: Path) -> Path:
    cache = reference_dir / "fhir-packages"
    if not (cache / SAS / "package").is_dir():
        pytest.skip(f"{SAS} not found in {cache}: SAS package checks not run")
    return cache


def test_manifest_short_and_long_forms(tmp_path: Path) -> None:
    manifest = tmp_path / "packages.toml"
    manifest.write_text(
        '[packages]\n"a.b" = "1.0.0"\n\n'
        '[packages."c.d"]\nversion = "2.1.0"\nsearch-parameters = ["Slot.x"]\n',
        encoding="utf-8",
    )
    assert read_manifest(manifest) == [
        PackageSpec("a.b", "1.0.0"),
        PackageSpec("c.d", "2.1.0", ("Slot.x",)),
    ]


def test_the_shipped_manifest_names_the_sas_guide() -> None:
    assert [s.key for s in read_manifest(MANIFEST)] == [SAS]


def test_sas_search_parameters_replace_and_extend_r4(package_cache: Path) -> None:
    registry = load_registry(package_cache)
    start = registry.get("Slot", "start")
    assert start is not None
    assert (start.url, start.type, start.expression) == (
        f"{SAS_SP}/slot-sp-start",
        "date",
        "Slot.start",
    )
    # The SAS definition names ge and le; R4's other prefixes stay usable for other clients.
    assert start.comparator[:2] == ("ge", "le")
    assert set(start.comparator) >= {"gt", "lt", "eq", "ap"}
    service = registry.get("Slot", "service-type-reference")
    assert service is not None
    assert service.type == "reference"
    assert service.expression == f"serviceType.extension.where(url='{EXT}').value"
    # The SearchParameter declares no target: it comes from the extension's definition.
    assert service.target == ("HealthcareService",)
    # Only Slot gains anything; the other types keep R4.
    assert registry.get("Schedule", "start") is None
    [package] = registry.packages
    assert package.key == SAS
    assert package.canonical == "https://interop.esante.gouv.fr/ig/fhir/sas"
    assert package.implementation_guides == (
        "https://interop.esante.gouv.fr/ig/fhir/sas/ImplementationGuide/ans.fhir.fr.sas",
    )
    assert registry.missing_packages == ()


def test_the_manifest_lists_what_the_package_provides(package_cache: Path) -> None:
    """The names in the missing-package warning come from the manifest: keep them true."""
    registry = load_registry(package_cache)
    declared = {s.key: sorted(s.search_parameters) for s in read_manifest(MANIFEST)}
    loaded = {p.key: sorted(p.search_parameters) for p in registry.packages}
    assert declared == loaded


def test_a_missing_package_is_reported_and_r4_stays(tmp_path: Path) -> None:
    (tmp_path / "ans.fhir.fr.sas#1.2.0" / "package").mkdir(parents=True)
    with capture_logs() as logs:
        registry = load_registry(tmp_path)
    [warning] = [e for e in logs if e["log_level"] == "warning"]
    assert warning["package"] == SAS
    assert warning["looked_in"] == str(tmp_path / SAS / "package")
    assert warning["other_versions"] == ["1.2.0"]
    assert warning["unavailable"] == [
        "Slot.start (R4 definition used instead)",
        "Slot.service-type-reference",
    ]
    assert "FHIR_PACKAGE_PATH" in warning["fix"] and "reindex" in warning["fix"]
    start = registry.get("Slot", "start")
    assert start is not None and "gt" in start.comparator
    assert registry.get("Slot", "service-type-reference") is None
    assert registry.packages == ()
    assert [m.key for m in registry.missing_packages] == [SAS]


async def test_the_server_starts_without_its_packages(tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/fhir.sqlite", package_path=tmp_path / "none"
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.get("/metadata")
    assert response.status_code == 200
    slot = next(r for r in response.json()["rest"][0]["resource"] if r["type"] == "Slot")
    names = {p["name"]: p["definition"] for p in slot["searchParam"]}
    assert names["start"] == "http://hl7.org/fhir/SearchParameter/Slot-start"
    assert "service-type-reference" not in names


def test_make_context_uses_the_cache_from_settings(package_cache: Path) -> None:
    settings = Settings(package_path=package_cache)
    store: Any = SimpleNamespace(policy=Policy())  # no database: only the registry is read
    first = make_context(settings, store).registry
    assert first is make_context(settings, store).registry  # read once per cache path
    assert first is registry_for(package_cache)
    assert [p.key for p in first.packages] == [SAS]
    slot_start = first.get("Slot", "start")
    assert slot_start is not None and slot_start.url == f"{SAS_SP}/slot-sp-start"


# --- a self-written package ------------------------------------------------------------------


def _write(folder: Path, name: str, data: dict[str, Any] | str) -> None:
    text = data if isinstance(data, str) else json.dumps(data)
    (folder / name).write_text(text, encoding="utf-8")


def _search_parameter(pid: str, **fields: Any) -> dict[str, Any]:
    return {
        "resourceType": "SearchParameter",
        "id": pid,
        "url": f"http://x/sp/{pid}",
        "status": "active",
        **fields,
    }


@pytest.fixture
def own_cache(tmp_path: Path) -> tuple[Path, Path]:
    folder = tmp_path / "cache" / "x.test#0.1.0" / "package"
    folder.mkdir(parents=True)
    _write(folder, "package.json", {"name": "x.test", "version": "0.1.0", "canonical": "http://x"})
    _write(
        folder,
        "StructureDefinition-ext.json",
        {
            "resourceType": "StructureDefinition",
            "url": "http://x/ext",
            "type": "Extension",
            "snapshot": {
                "element": [
                    {"path": "Extension.url"},
                    {
                        "path": "Extension.value[x]",
                        "type": [
                            {
                                "code": "Reference",
                                "targetProfile": [
                                    "http://hl7.org/fhir/StructureDefinition/Organization",
                                    "http://hl7.org/fhir/StructureDefinition/Location",
                                ],
                            }
                        ],
                    },
                ]
            },
        },
    )
    params = {
        "ext": _search_parameter(
            "ext",
            code="place",
            base=["Schedule"],
            type="reference",
            expression="extension('http://x/ext').value",
        ),
        "multi": _search_parameter(
            "multi",
            code="note",
            base=["Slot", "Schedule", "Patient"],
            type="string",
            expression="Slot.comment | Schedule.comment | Patient.name",
        ),
        "all": _search_parameter(
            "all", code="_source2", base=["Resource"], type="uri", expression="Resource.meta.source"
        ),
        "retired": _search_parameter(
            "retired",
            code="old",
            base=["Slot"],
            type="token",
            expression="Slot.status",
            status="retired",
        ),
        "bad": _search_parameter(
            "bad", code="broken", base=["Slot"], type="token", expression="Slot.where((("
        ),
    }
    for pid, sp in params.items():
        _write(folder, f"SearchParameter-{pid}.json", sp)
    _write(folder, "SearchParameter-unreadable.json", "{not json")
    manifest = tmp_path / "packages.toml"
    manifest.write_text('[packages]\n"x.test" = "0.1.0"\n', encoding="utf-8")
    return tmp_path / "cache", manifest


def test_a_package_with_odd_definitions(own_cache: tuple[Path, Path]) -> None:
    cache, manifest = own_cache
    with capture_logs() as logs:
        registry = load_registry(cache, manifest)
    place = registry.get("Schedule", "place")
    assert place is not None and place.target == ("Organization", "Location")
    slot_note, schedule_note = registry.get("Slot", "note"), registry.get("Schedule", "note")
    assert slot_note is not None and slot_note.expression == "Slot.comment"
    assert schedule_note is not None and schedule_note.expression == "Schedule.comment"
    assert all(registry.get(t, "_source2") is not None for t in SERVED_TYPES)
    assert registry.get("Slot", "old") is None
    assert registry.get("Slot", "broken") is None
    warnings = {e["event"]: e for e in logs if e["log_level"] == "warning"}
    assert warnings["search parameter skipped: expression not understood"]["parameter"] == (
        "Slot.broken"
    )
    assert warnings["unreadable file in fhir package"]["file"].endswith(
        "SearchParameter-unreadable.json"
    )
    [package] = registry.packages
    assert package.canonical == "http://x"
    assert "Schedule.place" in package.search_parameters
