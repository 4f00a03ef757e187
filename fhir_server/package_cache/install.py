"""Installing packages into the cache, from folders, tarballs or a registry (``sources``).

An install is atomic per package: the content is written into a hidden temporary folder inside
the cache, checked (``package.json`` names the package and version asked for), then renamed to
``<name>#<version>``; any failure removes the temporary folder, so the cache never holds half a
package. What is wanted and why: ``wanted``.
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

from fhir_server.package_cache.errors import InstallError, NotHere, PackageNotFound
from fhir_server.package_cache.reader import dependencies, is_installed
from fhir_server.package_cache.sources import Source
from fhir_server.package_cache.types import Listener, QuietListener, Ref
from fhir_server.package_cache.wanted import DECLARED, Wanted, dependency


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
            queue.extend(dependency(dep, wanted) for dep in dependencies(cache, wanted.ref))
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
