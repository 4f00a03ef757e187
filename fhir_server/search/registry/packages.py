"""FHIR packages from the package cache, and the search parameters they add.

Which packages: the manifest ``profiles/packages.toml`` (name, version, and what each one
provides). Where: the FHIR package cache, ``FHIR_PACKAGE_PATH``, read through
``fhir_server.package_cache``.

Every SearchParameter of a package whose base is a served type is added to the
registry, replacing the R4 parameter with the same code. A reference parameter that declares
no target, like SAS ``service-type-reference`` on an extension, gets the targets of the
extension's ``value[x]`` from the extension definition found in the loaded packages.

A missing package does not make loading the registry fail: a warning names the package, the
search parameters that are therefore unavailable (from the manifest) and how to install it.
(``fhir-server load`` and ``reindex`` refuse to run without it unless told otherwise: the index
they write would lack those parameters.)
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import structlog

import profiles
from fhir_server.core.types import SERVED_TYPES
from fhir_server.package_cache import (
    DECLARED,
    MANIFEST,
    MissingPackage,
    PackageSpec,
    Ref,
    Wanted,
    locate,
    package_json,
    read_manifest,
    resources,
)
from fhir_server.search.registry.expressions import check_expression, split_union
from fhir_server.search.registry.parameters import Package, Registry, SearchParameter


def _log() -> Any:
    # Looked up per call: startup-only logging, and tests can capture it after the app
    # configured structlog with cached loggers.
    return structlog.get_logger(__name__)


_ALL_TYPES = ("Resource", "DomainResource")
_CORE_PREFIX = "http://hl7.org/fhir/StructureDefinition/"
_EXTENSION_URL = re.compile(r"extension(?:\.where\(url\s*=\s*|\()'([^']+)'\)")


def _branches_for(expression: str, res_type: str) -> str:
    """Keep the ``|`` branches that apply to ``res_type`` (relative ones apply to all)."""
    mine = []
    for branch in split_union(expression):
        head = branch.lstrip("(").split(".", 1)[0].split("(", 1)[0]
        if head in (res_type, *_ALL_TYPES) or not head[:1].isupper():
            mine.append(branch)
    return " | ".join(mine)


class _Extensions:
    """Extension definitions of the loaded packages, read once and only when needed."""

    def __init__(self) -> None:
        self.directories: list[Path] = []
        self._by_url: dict[str, dict[str, Any]] | None = None

    def value_targets(self, url: str) -> tuple[str, ...]:
        if self._by_url is None:
            self._by_url = {}
            for directory in self.directories:
                for sd in resources(directory, "StructureDefinition"):
                    if sd.get("type") == "Extension" and isinstance(sd.get("url"), str):
                        self._by_url[sd["url"]] = sd
        definition = self._by_url.get(url)
        if definition is None:
            return ()
        targets: list[str] = []
        for element in definition.get("snapshot", definition.get("differential", {})).get(
            "element", []
        ):
            if element.get("path") != "Extension.value[x]":
                continue
            for type_ in element.get("type", []):
                for profile in type_.get("targetProfile", []):
                    name = str(profile).removeprefix(_CORE_PREFIX)
                    if "/" not in name and name not in targets:
                        targets.append(name)
        return tuple(targets)


def _extension_url(expression: str) -> str | None:
    found = _EXTENSION_URL.search(expression)
    return found.group(1) if found else None


def _parameters(
    sp: dict[str, Any], extensions: _Extensions
) -> Iterator[tuple[str, SearchParameter]]:
    """(type, parameter) for each served type the SearchParameter applies to."""
    bases: list[str] = []
    for base in sp.get("base", []):
        if base in _ALL_TYPES:
            bases.extend(SERVED_TYPES)
        elif base in SERVED_TYPES:
            bases.append(base)
    target = tuple(sp.get("target", ()))
    if sp.get("type") == "reference" and not target:
        url = _extension_url(sp.get("expression", ""))
        target = extensions.value_targets(url) if url else ()
    for res_type in dict.fromkeys(bases):
        expression = _branches_for(sp.get("expression", ""), res_type)
        if not expression:
            continue
        yield (
            res_type,
            SearchParameter(
                code=sp["code"],
                type=sp["type"],
                expression=expression,
                url=sp.get("url", ""),
                target=target,
                comparator=tuple(sp.get("comparator", ())),
                modifier=tuple(sp.get("modifier", ())),
            ),
        )


def _load(registry: Registry, spec: PackageSpec, directory: Path, ext: _Extensions) -> Package:
    manifest = package_json(directory)
    guides = tuple(
        str(ig["url"]) for ig in resources(directory, "ImplementationGuide") if "url" in ig
    )
    added: list[str] = []
    for sp in resources(directory, "SearchParameter"):
        if sp.get("status") == "retired" or not sp.get("code") or not sp.get("type"):
            continue
        for res_type, param in _parameters(sp, ext):
            try:
                check_expression(res_type, param.expression)
            except ValueError as exc:
                _log().warning(
                    "search parameter skipped: expression not understood",
                    package=spec.key,
                    parameter=f"{res_type}.{param.code}",
                    expression=param.expression,
                    error=str(exc),
                )
                continue
            replaced = registry.get(res_type, param.code)
            if replaced is not None and replaced.type == param.type and param.comparator:
                # A profile's narrower comparator list (SAS Slot.start: ge, le) describes
                # what its clients send; other clients keep the R4 comparators.
                merged = tuple(dict.fromkeys((*param.comparator, *replaced.comparator)))
                param = dataclasses.replace(param, comparator=merged)
            registry.add(res_type, param)
            added.append(f"{res_type}.{param.code}")
            _log().debug(
                "search parameter from package",
                package=spec.key,
                parameter=f"{res_type}.{param.code}",
                replaces=replaced.url if replaced else None,
                target=list(param.target) or None,
                comparator=list(param.comparator) or None,
            )
    return Package(
        name=spec.name,
        version=spec.version,
        directory=directory,
        canonical=str(manifest.get("canonical", "")),
        title=str(manifest.get("title", "")),
        implementation_guides=guides,
        search_parameters=tuple(added),
    )


def _warn_missing(registry: Registry, spec: PackageSpec, missing: MissingPackage) -> None:
    unavailable = []
    for name in spec.search_parameters:
        res_type, _, code = name.partition(".")
        kept = registry.get(res_type, code)
        unavailable.append(f"{name} (R4 definition used instead)" if kept else name)
    _log().warning(
        "fhir package missing: its search parameters are unavailable",
        package=spec.key,
        looked_in=str(missing.looked_in),
        other_versions=list(missing.other_versions) or None,
        unavailable=unavailable or "unknown (not listed in profiles/packages.toml)",
        fix=(
            f"run `fhir-server packages install {spec.key}` (or point FHIR_PACKAGE_PATH at a "
            f"package cache holding {spec.key}/package/), then `fhir-server reindex`"
        ),
    )


def load_registry(cache_path: Path, manifest: Path = MANIFEST) -> Registry:
    """The R4 parameters plus those of every manifest package found in ``cache_path``."""
    registry = Registry(profiles.r4_search_parameters())
    specs = {s.key: s for s in read_manifest(manifest)}
    roots = [Wanted(Ref(s.name, s.version), s.required, DECLARED) for s in specs.values()]
    located = locate(cache_path, roots, with_dependencies=False)
    extensions = _Extensions()
    extensions.directories = [folder for _w, folder in located.found]
    loaded: list[Package] = []
    for missing in located.missing:  # first: "R4 definition used instead" means just that
        _warn_missing(registry, specs[missing.key], missing)
    for wanted, folder in located.found:
        package = _load(registry, specs[wanted.key], folder, extensions)
        _log().info(
            "fhir package loaded",
            package=package.key,
            search_parameters=list(package.search_parameters),
        )
        loaded.append(package)
    registry.packages, registry.missing_packages = tuple(loaded), located.missing
    return registry


@cache
def registry_for(cache_path: Path, manifest: Path = MANIFEST) -> Registry:
    """``load_registry`` once per (cache, manifest): the registry is read-only once built."""
    return load_registry(cache_path, manifest)
