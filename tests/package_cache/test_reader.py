"""Reading installed packages: folders, package.json, resources from .index.json or by
reading the files, and the warning for a file that cannot be read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from fhir_server.package_cache import InstallError, Ref
from fhir_server.package_cache.reader import (
    dependencies,
    entries,
    expected_folder,
    is_installed,
    other_versions,
    package_folder,
    package_json,
    resources,
)


def _write(folder: Path, name: str, data: dict[str, Any] | str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(data if isinstance(data, str) else json.dumps(data))


def _package(cache: Path, name: str, version: str, **manifest: Any) -> Path:
    folder = cache / f"{name}#{version}" / "package"
    _write(folder, "package.json", {"name": name, "version": version, **manifest})
    return folder


def test_where_a_package_is_and_which_versions_are_there(tmp_path: Path) -> None:
    folder = _package(tmp_path, "a.b", "1.0.0", canonical="http://a")
    (tmp_path / "a.b#0.9.0" / "package").mkdir(parents=True)
    assert package_folder(tmp_path, Ref("a.b", "1.0.0")) == folder
    assert package_folder(tmp_path, Ref("a.b", "2.0.0")) is None
    assert expected_folder(tmp_path, Ref("a.b", "2.0.0")) == tmp_path / "a.b#2.0.0" / "package"
    assert is_installed(tmp_path, Ref("a.b", "0.9.0"))
    assert other_versions(tmp_path, "a.b") == ("0.9.0", "1.0.0")
    assert other_versions(tmp_path / "absent", "a.b") == ()
    assert package_json(folder)["canonical"] == "http://a"
    assert package_json(tmp_path / "a.b#0.9.0" / "package") == {}


def test_dependencies_skip_what_is_not_a_package_reference(tmp_path: Path) -> None:
    _package(tmp_path, "top", "1", dependencies={"dep": "2", "../evil": "1", "x": "/abs"})
    assert dependencies(tmp_path, Ref("top", "1")) == [Ref("dep", "2")]
    assert dependencies(tmp_path, Ref("absent", "1")) == []


def test_ref_parse() -> None:
    assert Ref.parse("ans.fhir.fr.sas#1.1.0") == Ref("ans.fhir.fr.sas", "1.1.0")
    with pytest.raises(InstallError):
        Ref.parse("no-version")


def test_entries_from_the_index_file(tmp_path: Path) -> None:
    """``.index.json`` (FHIR tooling) lists the files: they are not opened to be listed."""
    folder = _package(tmp_path, "a.b", "1.0.0")
    index = {
        "index-version": 2,
        "files": [
            {"filename": "vs.json", "resourceType": "ValueSet", "url": "http://vs", "version": "2"},
            {"filename": "sp.json", "resourceType": "SearchParameter", "url": "http://sp"},
            {"resourceType": "ValueSet", "url": "http://no-file"},
            "not an object",
        ],
    }
    _write(folder, ".index.json", index)
    [vs] = entries(folder, ("ValueSet", "CodeSystem"))
    assert (vs.path, vs.resource_type, vs.url, vs.version) == (
        folder / "vs.json",
        "ValueSet",
        "http://vs",
        "2",
    )
    assert [e.url for e in entries(folder, ("SearchParameter",))] == ["http://sp"]


def test_entries_by_reading_the_files(tmp_path: Path) -> None:
    folder = _package(tmp_path, "a.b", "1.0.0")
    _write(folder, "ValueSet-x.json", {"resourceType": "ValueSet", "url": "http://x"})
    _write(folder, "odd-name.json", {"resourceType": "CodeSystem", "url": 12})
    _write(folder, "SearchParameter-s.json", {"resourceType": "SearchParameter", "code": "s"})
    _write(folder, "notes.json", "[1, 2]")
    found = entries(folder, ("ValueSet", "CodeSystem"))
    assert [(e.path.name, e.resource_type, e.url) for e in found] == [
        ("ValueSet-x.json", "ValueSet", "http://x"),
        ("odd-name.json", "CodeSystem", ""),  # a url that is not a string: none
    ]


def test_resources_parsed_in_file_order_and_broken_files_reported(tmp_path: Path) -> None:
    folder = _package(tmp_path, "a.b", "1.0.0")
    for code in ("b", "a"):
        _write(
            folder,
            f"SearchParameter-{code}.json",
            {"resourceType": "SearchParameter", "code": code},
        )
    _write(folder, "SearchParameter-broken.json", "{not json")
    _write(folder, "broken.json", "{")  # not named as one: not worth a warning
    with capture_logs() as logs:
        found = [sp["code"] for sp in resources(folder, "SearchParameter")]
    assert found == ["a", "b"]
    [warning] = [e for e in logs if e["log_level"] == "warning"]
    assert warning["event"] == "unreadable file in fhir package"
    assert warning["file"].endswith("SearchParameter-broken.json")
