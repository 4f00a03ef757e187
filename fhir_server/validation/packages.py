"""Conformance resources for validation: StructureDefinitions, ValueSets and CodeSystems.

Read from FHIR packages in a package cache (the standard layout
``<cache>/<name>#<version>/package/*.json``, see
https://confluence.hl7.org/display/FHIR/FHIR+Package+Cache) and from loose folders of JSON
files (the NOS terminologies). Each package's ``package.json`` dependencies are followed in
the same cache, so naming ``ans.fhir.fr.sas#1.1.0`` also brings ``hl7.fhir.r4.core#4.0.1``.

Resources are indexed by canonical URL and by ``url|version`` once, at load; the JSON of a
resource is parsed again only when it is first asked for, so the 60 MB of R4 definitions are
not held in memory. The first source that defines a URL wins: the packages asked for, then
their dependencies, then the loose folders.

A package that is not in the cache is not an exception: it becomes a ``MissingPackage``
naming it, where it was looked for and how to install it. Which packages to ask for comes
from the manifest (``profiles/packages.toml``); the caller reads it, this module only needs
names and versions.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson

KINDS = ("StructureDefinition", "ValueSet", "CodeSystem")
R4_CORE = ("hl7.fhir.r4.core", "4.0.1")
CORE_SD = "http://hl7.org/fhir/StructureDefinition/"


class PackageRef(Protocol):
    """Anything with a package name and version (the manifest's ``PackageSpec`` fits)."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...


@dataclass(frozen=True)
class Ref:
    name: str
    version: str

    @classmethod
    def parse(cls, text: str) -> Ref:
        """``name#version``."""
        name, _, version = text.partition("#")
        if not name or not version:
            raise ValueError(f"expected name#version, got {text!r}")
        return cls(name, version)


@dataclass(frozen=True)
class MissingPackage:
    """A package asked for (or needed by one) that the cache does not hold."""

    name: str
    version: str
    looked_in: Path
    required_by: str | None = None  # "name#version" of the package that depends on it
    other_versions: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.name}#{self.version}"

    def message(self, lang: str = "en") -> str:
        others = ", ".join(self.other_versions)
        if lang == "fr":
            text = f"Paquet FHIR {self.key} introuvable (cherché dans {self.looked_in})"
            if self.required_by:
                text += f", dépendance de {self.required_by}"
            if others:
                text += f" ; versions présentes : {others}"
            return text + (
                f". Installez-le avec `fhir-server packages install {self.key}` ou copiez "
                f"le dossier {self.key}/package/ dans le cache (FHIR_PACKAGE_PATH)."
            )
        text = f"FHIR package {self.key} not found (looked in {self.looked_in})"
        if self.required_by:
            text += f", a dependency of {self.required_by}"
        if others:
            text += f"; versions present: {others}"
        return text + (
            f". Install it with `fhir-server packages install {self.key}` or copy the folder "
            f"{self.key}/package/ into the package cache (FHIR_PACKAGE_PATH)."
        )


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
            self._cache[entry.path] = _read(entry.path)
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


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _index_file(directory: Path) -> Iterator[_Entry] | None:
    """Entries from the package's ``.index.json`` (written by the FHIR tooling), if any."""
    data = _read(directory / ".index.json")
    if data is None or not isinstance(data.get("files"), list):
        return None
    return (
        _Entry(
            directory / str(f["filename"]),
            str(f["resourceType"]),
            str(f["url"]),
            str(f.get("version") or ""),
            "",
        )
        for f in data["files"]
        if isinstance(f, dict)
        and f.get("resourceType") in KINDS
        and isinstance(f.get("url"), str)
        and isinstance(f.get("filename"), str)
    )


def _scan(directory: Path) -> Iterator[_Entry]:
    """Entries from reading every conformance file (packages without ``.index.json``)."""
    for path in sorted(directory.glob("*.json")):
        prefix = path.name.split("-", 1)[0]
        if "-" in path.name and prefix[:1].isupper() and prefix not in KINDS:
            continue  # "SearchParameter-x.json": named by its type, not one we need
        if path.name == "package.json":
            continue
        data = _read(path)
        if data is None or data.get("resourceType") not in KINDS:
            continue
        url = data.get("url")
        if isinstance(url, str):
            yield _Entry(path, data["resourceType"], url, str(data.get("version") or ""), "")


def _entries(directory: Path, source: str) -> list[_Entry]:
    found = _index_file(directory)
    entries = list(found) if found is not None else list(_scan(directory))
    return [_Entry(e.path, e.kind, e.url, e.version, source) for e in entries]


def _other_versions(cache: Path, name: str) -> tuple[str, ...]:
    if not cache.is_dir():
        return ()
    return tuple(sorted(p.name.split("#", 1)[1] for p in cache.glob(f"{name}#*") if p.is_dir()))


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
    cache = cache.expanduser()
    queue: list[tuple[Ref, str | None]] = []
    for item in packages:
        if isinstance(item, str):
            ref = Ref.parse(item)
        elif isinstance(item, tuple):
            ref = Ref(item[0], item[1])
        else:
            ref = Ref(item.name, item.version)
        queue.append((ref, None))
    if core:
        queue.append((Ref(*R4_CORE), None))
    store = Conformance()
    loaded: list[LoadedPackage] = []
    missing: list[MissingPackage] = []
    seen: set[Ref] = set()
    while queue:
        ref, required_by = queue.pop(0)
        if ref in seen:
            continue
        seen.add(ref)
        key = f"{ref.name}#{ref.version}"
        directory = cache / key / "package"
        if not directory.is_dir():
            missing.append(
                MissingPackage(
                    ref.name,
                    ref.version,
                    directory,
                    required_by,
                    _other_versions(cache, ref.name),
                )
            )
            continue
        entries = _entries(directory, key)
        for entry in entries:
            store.add(entry)
        loaded.append(LoadedPackage(ref.name, ref.version, directory, len(entries)))
        if dependencies:
            manifest = _read(directory / "package.json") or {}
            deps = manifest.get("dependencies")
            if isinstance(deps, dict):
                # Dependencies go after what was asked for: the packages named first win.
                queue.extend((Ref(str(n), str(v)), key) for n, v in deps.items())
    folder_list = []
    for folder in folders:
        folder = folder.expanduser()
        folder_list.append(folder)
        if folder.is_dir():
            for entry in _entries(folder, str(folder)):
                store.add(entry)
    store.packages, store.missing, store.folders = tuple(loaded), tuple(missing), tuple(folder_list)
    return store
