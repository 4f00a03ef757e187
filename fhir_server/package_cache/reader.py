"""Reading installed packages: where a package is, its ``package.json``, its resources.

The one reader of the package cache, used by search (SearchParameters, extension
definitions), validation (StructureDefinitions, ValueSets, CodeSystems) and the package
commands. Layout (the standard FHIR package cache,
https://confluence.hl7.org/display/FHIR/FHIR+Package+Cache):
``<cache>/<name>#<version>/package/package.json`` and the package's resources beside it, with
an optional ``.index.json`` (written by the FHIR tooling) listing them. A package is installed
when its ``package/`` folder is there.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import structlog

from fhir_server.package_cache.errors import InstallError
from fhir_server.package_cache.types import Ref


def _log() -> Any:
    # Looked up per call: start-up only, and tests capture it after the app configured
    # structlog with cached loggers.
    return structlog.get_logger(__name__)


def package_folder(cache: Path, ref: Ref) -> Path | None:
    """``<cache>/<name>#<version>/package`` when the package is installed."""
    folder = expected_folder(cache, ref)
    return folder if folder.is_dir() else None


def expected_folder(cache: Path, ref: Ref) -> Path:
    """Where the package's resources are when it is installed."""
    return cache.expanduser() / ref.key / "package"


def is_installed(cache: Path, ref: Ref) -> bool:
    return package_folder(cache, ref) is not None


def other_versions(cache: Path, name: str) -> tuple[str, ...]:
    """Versions of ``name`` that the cache holds (to say so when the wanted one is missing)."""
    root = cache.expanduser()
    if not root.is_dir():
        return ()
    return tuple(sorted(p.name.split("#", 1)[1] for p in root.glob(f"{name}#*") if p.is_dir()))


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from a file; None when it is unreadable or not an object."""
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def package_json(folder: Path) -> dict[str, Any]:
    """The ``package.json`` of a package folder (empty when unreadable)."""
    return read_json(folder / "package.json") or {}


def dependencies(cache: Path, ref: Ref) -> list[Ref]:
    """The ``dependencies`` of an installed package (unreadable or odd entries are skipped)."""
    folder = package_folder(cache, ref)
    deps = package_json(folder).get("dependencies") if folder is not None else None
    found = []
    for name, version in deps.items() if isinstance(deps, dict) else ():
        try:
            found.append(Ref(str(name), str(version)))
        except InstallError:
            continue
    return found


@dataclass(frozen=True)
class Entry:
    """One resource file of a package (or of a loose folder of resources)."""

    path: Path
    resource_type: str
    url: str  # "" when the resource has none
    version: str  # "" when the resource has none


def entries(folder: Path, types: Collection[str]) -> list[Entry]:
    """The resource files of ``folder`` whose resource type is one of ``types``: from its
    ``.index.json`` when there is one, else by reading the files (in name order)."""
    listed = _from_index(folder, types)
    return listed if listed is not None else list(_scan(folder, types))


def resources(folder: Path, resource_type: str) -> Iterator[dict[str, Any]]:
    """The resources of one type in ``folder``, parsed, in file name order."""
    for entry in sorted(entries(folder, (resource_type,)), key=lambda e: e.path.name):
        data = read_json(entry.path)
        if data is None:
            _log().warning("unreadable file in fhir package", file=str(entry.path))
        elif data.get("resourceType") == resource_type:
            yield data


def _from_index(folder: Path, types: Collection[str]) -> list[Entry] | None:
    index = read_json(folder / ".index.json")
    files = index.get("files") if index is not None else None
    if not isinstance(files, list):
        return None
    return [
        Entry(
            folder / f["filename"],
            str(f["resourceType"]),
            str(f.get("url") or ""),
            str(f.get("version") or ""),
        )
        for f in files
        if isinstance(f, dict)
        and f.get("resourceType") in types
        and isinstance(f.get("filename"), str)
    ]


def _scan(folder: Path, types: Collection[str]) -> Iterator[Entry]:
    for path in sorted(folder.glob("*.json")):
        prefix = path.name.split("-", 1)[0]
        if "-" in path.name and prefix[:1].isupper() and prefix not in types:
            continue  # "SearchParameter-x.json" is named by its type: not read for others
        if path.name == "package.json":
            continue
        data = read_json(path)
        if data is None:
            if prefix in types:  # a file meant to be one of them: say it is broken
                _log().warning("unreadable file in fhir package", file=str(path))
            continue
        rtype = _text(data.get("resourceType"))
        if rtype in types:
            yield Entry(path, rtype, _text(data.get("url")), _text(data.get("version")))


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""
