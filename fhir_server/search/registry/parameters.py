"""The search parameters the server knows, from the official definitions.

The R4 table is generated from ``hl7.fhir.r4.core#4.0.1`` by ``profiles/generate.py`` and
ships with the code, so the server starts offline. Each parameter knows its type, FHIRPath
expression and, for references, its target types. FHIR packages from the package cache add
or replace parameters on top (``packages.py``: the SAS ``Slot`` ``start`` and
``service-type-reference``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import profiles
from fhir_server.core.types import SERVED_TYPES
from fhir_server.package_cache import MissingPackage

# Result parameters and controls: never search criteria.
CONTROL_PARAMETERS = frozenset(
    {
        "_count",
        "_sort",
        "_include",
        "_revinclude",
        "_summary",
        "_total",
        "_elements",
        "_contained",
        "_containedType",
        "_format",
        "_pretty",
        "_cursor",
        "_offset",
        "_explain",
    }
)


@dataclass(frozen=True)
class SearchParameter:
    code: str
    type: str
    expression: str
    url: str = ""
    target: tuple[str, ...] = ()
    comparator: tuple[str, ...] = ()
    modifier: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class Package:
    """A FHIR package the registry took definitions from (``packages.load_registry``)."""

    name: str
    version: str
    directory: Path
    canonical: str = ""
    title: str = ""
    implementation_guides: tuple[str, ...] = ()  # ImplementationGuide canonical URLs
    search_parameters: tuple[str, ...] = ()  # "Type.code" added to the registry

    @property
    def key(self) -> str:
        return f"{self.name}#{self.version}"


class Registry:
    """Search parameters by resource type (``Resource`` ones apply to every type).

    ``packages`` and ``missing_packages`` say which FHIR packages added definitions (set by
    ``packages.load_registry``; the CapabilityStatement can list them as implementation guides).
    """

    def __init__(self, table: dict[str, dict[str, dict[str, Any]]]) -> None:
        self.packages: tuple[Package, ...] = ()
        self.missing_packages: tuple[MissingPackage, ...] = ()
        self._by_type: dict[str, dict[str, SearchParameter]] = {}
        common = {code: _make(code, e) for code, e in table.get("Resource", {}).items()}
        for rtype in SERVED_TYPES:
            own = {code: _make(code, e) for code, e in table.get(rtype, {}).items()}
            self._by_type[rtype] = {**common, **own}

    def get(self, res_type: str, code: str) -> SearchParameter | None:
        return self._by_type.get(res_type, {}).get(code)

    def for_type(self, res_type: str) -> dict[str, SearchParameter]:
        return self._by_type.get(res_type, {})

    def add(self, res_type: str, param: SearchParameter) -> None:
        self._by_type.setdefault(res_type, {})[param.code] = param


def _make(code: str, entry: dict[str, Any]) -> SearchParameter:
    return SearchParameter(
        code=code,
        type=entry["type"],
        expression=entry.get("expression", ""),
        url=entry.get("url", ""),
        target=tuple(entry.get("target", ())),
        comparator=tuple(entry.get("comparator", ())),
        modifier=tuple(entry.get("modifier", ())),
    )


@cache
def default_registry() -> Registry:
    return Registry(profiles.r4_search_parameters())
