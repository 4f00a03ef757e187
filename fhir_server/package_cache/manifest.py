"""The package manifest, ``profiles/packages.toml``: which FHIR packages the server uses.

Read by search (the search parameters a package adds), validation (its profiles) and the
package cache commands (``fhir-server packages list|install|check``). Each entry names a
package and its version; a package is *required* unless it says ``required = false``:
``fhir-server serve`` refuses to start without it while profile validation is on, and
``load`` and ``reindex`` refuse without those that provide search parameters.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

import profiles

MANIFEST = profiles.HERE / "packages.toml"


@dataclass(frozen=True)
class PackageSpec:
    """One manifest entry."""

    name: str
    version: str
    search_parameters: tuple[str, ...] = ()  # "Type.code" the package provides
    required: bool = True  # serve refuses to start without it (profile validation on)

    @property
    def key(self) -> str:
        return f"{self.name}#{self.version}"


def read_manifest(path: Path = MANIFEST) -> list[PackageSpec]:
    """The packages named in the manifest, in order (a later one wins on the same code)."""
    with path.open("rb") as f:
        data = tomllib.load(f)
    specs = []
    for name, entry in data.get("packages", {}).items():
        if isinstance(entry, str):
            specs.append(PackageSpec(name, entry))
        else:
            provides = tuple(str(p) for p in entry.get("search-parameters", ()))
            required = bool(entry.get("required", True))
            specs.append(PackageSpec(name, str(entry["version"]), provides, required))
    return specs
