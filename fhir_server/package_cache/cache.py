"""The package cache: which packages the server wants, which are there, installing the rest.

Layout (the standard FHIR package cache, https://confluence.hl7.org/display/FHIR/FHIR+Package+Cache):
``<cache>/<name>#<version>/package/package.json`` and the package's resources beside it. A
package is installed when its ``package/`` folder is there.

Wanted packages are the manifest's (``profiles/packages.toml``), R4 core (the base of profile
validation) and, transitively, the ``dependencies`` of their ``package.json``. Only the
manifest's required packages and R4 core are *required*: ``fhir-server serve`` refuses to start
without them while profile validation is on. Dependencies improve validation (FR Core
bindings, terminologies) and are installed when a source holds them.

An install is atomic per package: the content is written into a hidden temporary folder inside
the cache, checked (``package.json`` names the package and version asked for), then renamed to
``<name>#<version>``; any failure removes the temporary folder, so the cache never holds half a
package.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from fhir_server.core.manifest import PackageSpec
from fhir_server.package_cache.errors import InstallError, NotHere, PackageNotFound
from fhir_server.package_cache.sources import Source
from fhir_server.package_cache.types import Listener, QuietListener, Ref

R4_CORE = Ref("hl7.fhir.r4.core", "4.0.1")
DECLARED = "profiles/packages.toml"


@dataclass(frozen=True)
class Wanted:
    """A package the server wants, and why."""

    ref: Ref
    required: bool
    reason: str  # "profiles/packages.toml", "dependency of x#1", "asked for", ...

    @property
    def key(self) -> str:
        return self.ref.key


def manifest_roots(specs: Iterable[PackageSpec]) -> list[Wanted]:
    """The manifest's packages, then R4 core (required: the validator is built on it)."""
    roots = [Wanted(Ref(s.name, s.version), s.required, DECLARED) for s in specs]
    if all(w.ref != R4_CORE for w in roots):
        roots.append(Wanted(R4_CORE, True, "base of profile validation"))
    return roots


def is_installed(cache: Path, ref: Ref) -> bool:
    return (cache.expanduser() / ref.key / "package").is_dir()


def dependencies(cache: Path, ref: Ref) -> list[Ref]:
    """The ``dependencies`` of an installed package (unreadable or odd entries are skipped)."""
    try:
        manifest = orjson.loads(
            (cache.expanduser() / ref.key / "package" / "package.json").read_bytes()
        )
    except (OSError, orjson.JSONDecodeError):
        return []
    deps = manifest.get("dependencies") if isinstance(manifest, dict) else None
    found = []
    for name, version in (deps or {}).items() if isinstance(deps, dict) else ():
        try:
            found.append(Ref(str(name), str(version)))
        except InstallError:
            continue
    return found


def closure(cache: Path, roots: Iterable[Wanted]) -> list[Wanted]:
    """The roots and, breadth first, the dependencies of those installed (first mention wins)."""
    queue, seen, result = deque(roots), set[Ref](), []
    while queue:
        wanted = queue.popleft()
        if wanted.ref in seen:
            continue
        seen.add(wanted.ref)
        result.append(wanted)
        for dep in dependencies(cache, wanted.ref):
            queue.append(Wanted(dep, False, f"dependency of {wanted.key}"))
    return result


def missing_required(cache: Path, specs: Iterable[PackageSpec]) -> list[Wanted]:
    """Required packages (the manifest's and R4 core) that are not in the cache."""
    return [w for w in manifest_roots(specs) if w.required and not is_installed(cache, w.ref)]


def missing_message(cache: Path, missing: Sequence[Wanted]) -> list[str]:
    """The start-up error: one line per missing package, then how to install them."""
    lines = [
        f"FHIR package {w.key} is not installed in {cache.expanduser()} (FHIR_PACKAGE_PATH); "
        f"profile validation needs it ({w.reason})"
        for w in missing
    ]
    keys = " ".join(w.key for w in missing)
    lines.append(
        f"install it with: fhir-server packages install {keys} "
        "(from the FHIR package registry, FHIR_PACKAGE_REGISTRY; offline add --from DIR_OR_TGZ), "
        "or set FHIR_VALIDATE_PROFILES=false to serve without profile validation"
    )
    return lines


@dataclass(frozen=True)
class Failure:
    wanted: Wanted
    reason: str
    not_found: bool = False  # no source holds it (rather than a source that failed)

    @property
    def fatal(self) -> bool:
        """Anything but an optional dependency that no source holds."""
        return self.wanted.required or not self.not_found

    def message(self) -> str:
        why = "" if self.wanted.reason in (DECLARED, "asked for") else f" ({self.wanted.reason})"
        return f"{self.wanted.key}{why}: {self.reason}"


@dataclass
class InstallReport:
    installed: list[Wanted] = field(default_factory=list)
    present: list[Wanted] = field(default_factory=list)  # already in the cache
    failed: list[Failure] = field(default_factory=list)


def install(
    cache: Path,
    roots: Iterable[Wanted],
    sources: Sequence[Source],
    *,
    with_dependencies: bool = True,
    listener: Listener | None = None,
) -> InstallReport:
    """Install the missing roots (and their dependencies), asking the sources in order.

    A package that cannot be installed is reported and skipped; the others still are."""
    cache = cache.expanduser()
    listener = listener or QuietListener()
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InstallError(f"cannot create the package cache {cache}: {exc}") from exc
    report = InstallReport()
    queue, seen = deque(roots), set[Ref]()
    while queue:
        wanted = queue.popleft()
        if wanted.ref in seen:
            continue
        seen.add(wanted.ref)
        if is_installed(cache, wanted.ref):
            report.present.append(wanted)
        else:
            try:
                _install_one(cache, wanted.ref, sources, listener)
            except InstallError as exc:
                listener.finished(wanted.ref, str(exc))
                not_found = isinstance(exc, PackageNotFound)
                report.failed.append(Failure(wanted, str(exc), not_found))
                continue
            listener.finished(wanted.ref, None)
            report.installed.append(wanted)
        if with_dependencies:
            queue.extend(
                Wanted(dep, False, f"dependency of {wanted.key}")
                for dep in dependencies(cache, wanted.ref)
            )
    return report


def _install_one(cache: Path, ref: Ref, sources: Sequence[Source], listener: Listener) -> None:
    # Hidden (leading dot) and not "<name>#...": readers globbing the cache never see it.
    scratch = Path(tempfile.mkdtemp(prefix=f".install-{ref.key}-", dir=cache))
    try:
        content = scratch / "content"
        absent: list[str] = []
        for source in sources:
            content.mkdir()
            try:
                source.fetch(ref, content, scratch, listener)
            except NotHere as exc:
                absent.append(str(exc))
                shutil.rmtree(content)
                continue
            _check(content, ref, source.label)
            break
        else:
            raise PackageNotFound(f"not found ({'; '.join(absent or ['no source given'])})")
        target = cache / ref.key
        try:
            os.rename(content, target)
        except OSError as exc:
            if is_installed(cache, ref):
                return  # another install got there first: same package, keep theirs
            raise InstallError(f"cannot move it into {target}: {exc}") from exc
    except OSError as exc:
        raise InstallError(f"cannot write into the package cache {cache}: {exc}") from exc
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _check(content: Path, ref: Ref, label: str) -> None:
    """The fetched content is the package asked for."""
    manifest_path = content / "package" / "package.json"
    try:
        manifest = orjson.loads(manifest_path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise InstallError(f"{label}: no readable package/package.json ({exc})") from exc
    if not isinstance(manifest, dict):
        raise InstallError(f"{label}: package/package.json is not a JSON object")
    holds = f"{manifest.get('name')}#{manifest.get('version')}"
    if holds != ref.key:
        raise InstallError(f"{label} holds {holds}, not {ref.key}")
