"""Conformance resources for validation: StructureDefinitions, ValueSets and CodeSystems.

Read from FHIR packages in a package cache (through ``fhir_server.package_cache``) and from
loose folders of JSON files (the NOS terminologies). Each package's ``package.json``
dependencies are followed in the same cache, so naming ``ans.fhir.fr.sas#1.1.0`` also brings
``hl7.fhir.r4.core#4.0.1``.

Resources are indexed by canonical URL and by ``url|version`` once, at load; the JSON of a
resource is parsed again only when it is first asked for, so the 60 MB of R4 definitions are
not held in memory. The first source that defines a URL wins: the packages asked for, then
their dependencies, then the loose folders.

A package that is not in the cache is not an exception: it becomes a
``package_cache.MissingPackage`` naming it, where it was looked for and how to install it.
Which packages to ask for comes from the manifest (``profiles/packages.toml``); the caller
reads it, this module only needs names and versions.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import structlog

from fhir_server.package_cache import (
    R4_CORE,
    MissingPackage,
    Ref,
    Wanted,
    entries,
    locate,
)
from fhir_server.package_cache.reader import read_json

KINDS = ("StructureDefinition", "ValueSet", "CodeSystem")
CORE_SD = "http://hl7.org/fhir/StructureDefinition/"


class PackageRef(Protocol):
    """Anything with a package name and version (the manifest's ``PackageSpec`` fits)."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...


@dataclass(frozen=True)
class LoadedPackage:
    name: str
    version: str
    directory: Path
    resources: int  # conformance resources indexed from it

    @property
    def key(self) -> str:
        return f"{self.name}#{self.version}"


@dataclass(frozen=True)
class _Entry:
    path: Path
    kind: str
    url: str
    version: str
    source: str  # package key or folder


@dataclass
class Conformance:
    """The index of conformance resources, by kind and canonical URL."""

    packages: tuple[LoadedPackage, ...] = ()
    missing: tuple[MissingPackage, ...] = ()
    folders: tuple[Path, ...] = ()
    _index: dict[str, dict[str, _Entry]] = field(default_factory=dict)
    _cache: dict[Path, dict[str, Any] | None] = field(default_factory=dict)

    def add(self, entry: _Entry) -> None:
        table = self._index.setdefault(entry.kind, {})
        for key in (entry.url, f"{entry.url}|{entry.version}" if entry.version else ""):
            if key and key not in table:
                table[key] = entry

    def add_resource(self, resource: dict[str, Any], source: str = "memory") -> None:
        """Index a resource given as JSON (tests, generated definitions): it wins over files."""
        kind, url = resource.get("resourceType"), resource.get("url")
        if kind not in KINDS or not isinstance(url, str):
            raise ValueError("expected a StructureDefinition, ValueSet or CodeSystem with a url")
        version = str(resource.get("version") or "")
        path = Path(f"<{source}>/{kind}/{url}|{version}")
        self._cache[path] = resource
        table = self._index.setdefault(str(kind), {})
        table[url] = _Entry(path, str(kind), url, version, source)
        if version:
            table[f"{url}|{version}"] = table[url]

    def _get(self, kind: str, url: str) -> dict[str, Any] | None:
        table = self._index.get(kind, {})
        entry = table.get(url)
        if entry is None and "|" in url:
            entry = table.get(url.split("|", 1)[0])  # another version: better than nothing
        if entry is None:
            return None
        if entry.path not in self._cache:
            self._cache[entry.path] = read_json(entry.path)
        return self._cache[entry.path]

    def structure_definition(self, url: str) -> dict[str, Any] | None:
        return self._get("StructureDefinition", url)

    def value_set(self, url: str) -> dict[str, Any] | None:
        return self._get("ValueSet", url)

    def code_system(self, url: str) -> dict[str, Any] | None:
        return self._get("CodeSystem", url)

    def core_type(self, type_name: str) -> dict[str, Any] | None:
        """The base R4 definition of a resource or data type (``Slot``, ``Identifier``)."""
        return self.structure_definition(CORE_SD + type_name)

    def urls(self, kind: str) -> list[str]:
        """Canonical URLs (without version) of one kind, in load order."""
        return [k for k in self._index.get(kind, {}) if "|" not in k]

    def source_of(self, kind: str, url: str) -> str | None:
        entry = self._index.get(kind, {}).get(url)
        return entry.source if entry else None

    @property
    def has_core(self) -> bool:
        return self.core_type("Resource") is not None


def _entries(folder: Path, source: str) -> list[_Entry]:
    return [
        _Entry(e.path, e.resource_type, e.url, e.version, source)
        for e in entries(folder, KINDS)
        if e.url
    ]


def _ref(item: PackageRef | tuple[str, str] | str) -> Ref:
    if isinstance(item, str):
        return Ref.parse(item)
    if isinstance(item, tuple):
        return Ref(item[0], item[1])
    return Ref(item.name, item.version)


def load_conformance(
    cache: Path,
    packages: Iterable[PackageRef | tuple[str, str] | str] = (),
    folders: Iterable[Path] = (),
    *,
    core: bool = True,
    dependencies: bool = True,
) -> Conformance:
    """Index the packages (``PackageSpec``, ``("name", "version")`` or ``"name#version"``),
    their dependencies found in ``cache``, R4 core (unless ``core=False``) and the folders."""
    roots = [Wanted(_ref(item), True, "asked for") for item in packages]
    if core:
        roots.append(Wanted(R4_CORE, True, "base of profile validation"))
    # Dependencies come after what was asked for: the packages named first win.
    located = locate(cache, roots, with_dependencies=dependencies)
    store = Conformance()
    loaded: list[LoadedPackage] = []
    for wanted, folder in located.found:
        found = _entries(folder, wanted.key)
        for entry in found:
            store.add(entry)
        loaded.append(LoadedPackage(wanted.ref.name, wanted.ref.version, folder, len(found)))
    folder_list = []
    for folder in folders:
        folder = folder.expanduser()
        folder_list.append(folder)
        if folder.is_dir():
            for entry in _entries(folder, str(folder)):
                store.add(entry)
    store.packages, store.missing, store.folders = (
        tuple(loaded),
        located.missing,
        tuple(folder_list),
    )
    return store


def log_missing_packages(conformance: Conformance) -> None:
    """One short warning per missing package (validation goes without its profiles and
    terminologies), then where to look: the dependencies of the SAS guide are often missing
    offline, and repeating the whole install advice for each made start-up logs unreadable."""
    log = structlog.get_logger(__name__)
    for missing in conformance.missing:
        log.warning(
            "fhir package missing: validation goes without its definitions",
            package=missing.key,
            needed_by=missing.required_by,
        )
    if conformance.missing:
        log.info(
            "`fhir-server packages list` shows the missing packages, "
            "`fhir-server packages install` installs those a source holds"
        )
