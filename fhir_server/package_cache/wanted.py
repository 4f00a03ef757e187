"""Which packages the server wants, which of them the cache holds, and what is missing.

Wanted packages are the manifest's (``profiles/packages.toml``), R4 core (the base of profile
validation) and, transitively, the ``dependencies`` of their ``package.json``. Only the
manifest's required packages and R4 core are *required*: ``fhir-server serve`` refuses to start
without them while profile validation is on. Dependencies improve validation (FR Core
bindings, terminologies) and are installed when a source holds them. Of the required ones,
those that provide search parameters are also needed by ``load`` and ``reindex``: without
them, the index would be computed with the R4 definitions only.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fhir_server.package_cache.manifest import PackageSpec
from fhir_server.package_cache.reader import (
    dependencies,
    expected_folder,
    is_installed,
    other_versions,
    package_folder,
)
from fhir_server.package_cache.types import Ref

R4_CORE = Ref("hl7.fhir.r4.core", "4.0.1")
DECLARED = "profiles/packages.toml"


@dataclass(frozen=True)
class Wanted:
    """A package the server wants, and why."""

    ref: Ref
    required: bool
    reason: str  # "profiles/packages.toml", "dependency of x#1", "asked for", ...
    required_by: str | None = None  # key of the package whose dependency it is

    @property
    def key(self) -> str:
        return self.ref.key


def manifest_roots(specs: Iterable[PackageSpec]) -> list[Wanted]:
    """The manifest's packages, then R4 core (required: the validator is built on it)."""
    roots = [Wanted(Ref(s.name, s.version), s.required, DECLARED) for s in specs]
    if all(w.ref != R4_CORE for w in roots):
        roots.append(Wanted(R4_CORE, True, "base of profile validation"))
    return roots


def dependency(ref: Ref, of: Wanted) -> Wanted:
    return Wanted(ref, False, f"dependency of {of.key}", of.key)


def closure(
    cache: Path, roots: Iterable[Wanted], *, with_dependencies: bool = True
) -> list[Wanted]:
    """The roots and, breadth first, the dependencies of those installed (first mention wins:
    a package named by the caller keeps its reason even when another one depends on it)."""
    queue, seen, result = deque(roots), set[Ref](), []
    while queue:
        wanted = queue.popleft()
        if wanted.ref in seen:
            continue
        seen.add(wanted.ref)
        result.append(wanted)
        if with_dependencies:
            queue.extend(dependency(dep, wanted) for dep in dependencies(cache, wanted.ref))
    return result


@dataclass(frozen=True)
class MissingPackage:
    """A package wanted (or needed by one) that the cache does not hold."""

    ref: Ref
    looked_in: Path
    required_by: str | None = None  # key of the package that depends on it
    other_versions: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return self.ref.key

    def message(self, lang: str = "en") -> str:
        """What is missing, where it was looked for and how to install it (one sentence)."""
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
class Located:
    """The wanted packages the cache holds (with their folder) and those it does not."""

    found: tuple[tuple[Wanted, Path], ...]
    missing: tuple[MissingPackage, ...]


def locate(cache: Path, roots: Iterable[Wanted], *, with_dependencies: bool = True) -> Located:
    """Find the roots and (``with_dependencies``) their dependencies in the cache, in
    ``closure`` order; a package that is not there is a ``MissingPackage``."""
    found: list[tuple[Wanted, Path]] = []
    missing: list[MissingPackage] = []
    for wanted in closure(cache, roots, with_dependencies=with_dependencies):
        folder = package_folder(cache, wanted.ref)
        if folder is not None:
            found.append((wanted, folder))
        else:
            missing.append(
                MissingPackage(
                    wanted.ref,
                    expected_folder(cache, wanted.ref),
                    wanted.required_by,
                    other_versions(cache, wanted.ref.name),
                )
            )
    return Located(tuple(found), tuple(missing))


def missing_required(
    cache: Path, specs: Iterable[PackageSpec], *, indexing_only: bool = False
) -> list[Wanted]:
    """Required packages (the manifest's and R4 core) that are not in the cache; with
    ``indexing_only``, only the manifest's required packages that provide search parameters
    (what ``load`` and ``reindex`` need, profile validation or not)."""
    specs = list(specs)
    if indexing_only:
        roots = [
            Wanted(Ref(s.name, s.version), True, DECLARED)
            for s in specs
            if s.required and s.search_parameters
        ]
    else:
        roots = [w for w in manifest_roots(specs) if w.required]
    return [w for w in roots if not is_installed(cache, w.ref)]


def missing_message(cache: Path, missing: Sequence[Wanted], *, indexing: bool = False) -> list[str]:
    """The error of a command that refuses to run: one line per missing package, then how
    to install them (or, ``indexing``, to go on without their search parameters)."""
    need = (
        "the search index needs its search parameters"
        if indexing
        else "profile validation needs it"
    )
    lines = [
        f"FHIR package {w.key} is not installed in {cache.expanduser()} (FHIR_PACKAGE_PATH); "
        f"{need} ({w.reason})"
        for w in missing
    ]
    keys = " ".join(w.key for w in missing)
    way_out = (
        "or pass --allow-missing-packages to index with the R4 search parameters only "
        "(then `fhir-server reindex` once they are installed)"
        if indexing
        else "or set FHIR_VALIDATE_PROFILES=false to serve without profile validation"
    )
    lines.append(
        f"install it with: fhir-server packages install {keys} "
        "(from the FHIR package registry, FHIR_PACKAGE_REGISTRY; offline add --from DIR_OR_TGZ), "
        f"{way_out}"
    )
    return lines
