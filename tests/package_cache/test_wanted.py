"""What the server wants from the package cache and what is missing: the closure of
dependencies, located packages, missing ones with where they were looked for, and what
``load``/``reindex`` need (the packages that add search parameters)."""

from __future__ import annotations

import json
from pathlib import Path

from fhir_server.package_cache import (
    R4_CORE,
    PackageSpec,
    Ref,
    Wanted,
    locate,
    missing_message,
    missing_required,
)


def _package(cache: Path, name: str, version: str, deps: dict[str, str] | None = None) -> Path:
    folder = cache / f"{name}#{version}" / "package"
    folder.mkdir(parents=True)
    manifest = {"name": name, "version": version, "dependencies": deps or {}}
    (folder / "package.json").write_text(json.dumps(manifest))
    return folder


def test_locate_follows_dependencies_and_reports_what_is_missing(tmp_path: Path) -> None:
    top = _package(tmp_path, "top", "1", {"dep": "2", "gone": "3"})
    dep = _package(tmp_path, "dep", "2", {"top": "1"})  # a loop: each package once
    (tmp_path / "other#0.9" / "package").mkdir(parents=True)
    roots = [Wanted(Ref("top", "1"), True, "asked for"), Wanted(Ref("other", "1.0"), True, "x")]
    located = locate(tmp_path, roots)
    assert [(w.key, folder) for w, folder in located.found] == [("top#1", top), ("dep#2", dep)]
    assert [w.required_by for w, _ in located.found] == [None, "top#1"]
    missing = {m.key: m for m in located.missing}
    assert list(missing) == ["other#1.0", "gone#3"]
    assert missing["other#1.0"].other_versions == ("0.9",)
    assert missing["other#1.0"].looked_in == tmp_path / "other#1.0" / "package"
    assert missing["gone#3"].required_by == "top#1"
    assert "a dependency of top#1" in missing["gone#3"].message()
    assert "dépendance de top#1" in missing["gone#3"].message("fr")
    alone = locate(tmp_path, roots[:1], with_dependencies=False)
    assert [w.key for w, _ in alone.found] == ["top#1"] and alone.missing == ()


def test_what_load_and_reindex_need(tmp_path: Path) -> None:
    specs = [
        PackageSpec("with.sp", "1", ("Slot.x",)),
        PackageSpec("profiles.only", "1"),
        PackageSpec("optional.sp", "1", ("Slot.y",), required=False),
    ]
    assert [w.key for w in missing_required(tmp_path, specs)] == [
        "with.sp#1",
        "profiles.only#1",
        R4_CORE.key,
    ]
    indexing = missing_required(tmp_path, specs, indexing_only=True)
    assert [w.key for w in indexing] == ["with.sp#1"]
    lines = missing_message(tmp_path, indexing, indexing=True)
    assert lines[0].startswith(f"FHIR package with.sp#1 is not installed in {tmp_path}")
    assert "search index needs its search parameters" in lines[0]
    assert "fhir-server packages install with.sp#1 " in lines[1]
    assert "--allow-missing-packages" in lines[1]
    _package(tmp_path, "with.sp", "1")
    assert missing_required(tmp_path, specs, indexing_only=True) == []
