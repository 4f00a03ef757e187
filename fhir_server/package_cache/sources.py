"""Where packages come from: a local folder, a tarball, or a FHIR package registry.

Each source writes one package's content (``package/...`` and any sibling folders) into an
empty directory it is given, or raises ``NotHere`` when it does not hold that package. The
caller checks ``package/package.json`` and moves the result into the cache.

- A folder that is itself a package cache: ``DIR/<name>#<version>/package/...`` (e.g. another
  machine's ``~/.fhir/packages`` or the team's reference cache).
- A folder that is one package: ``DIR/package/package.json`` or ``DIR/package.json``.
- A tarball as the registry serves it (``.tgz``, members under ``package/``).
- A registry speaking the FHIR package protocol: ``GET {registry}/{name}/{version}`` returns
  the tarball (https://packages.fhir.org, Simplifier, a local mirror).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Protocol

import httpx

from fhir_server.package_cache import _tarball
from fhir_server.package_cache.errors import InstallError, NotHere
from fhir_server.package_cache.reader import read_json
from fhir_server.package_cache.types import Listener, Ref

TIMEOUT = httpx.Timeout(60.0, connect=10.0)
MAX_DOWNLOAD_BYTES = 1024**3


class Source(Protocol):
    label: str

    def fetch(self, ref: Ref, into: Path, scratch: Path, listener: Listener) -> None:
        """Write the package into the empty folder ``into``; ``scratch`` is a private temporary
        folder beside it (for downloads). Raises ``NotHere`` or ``InstallError``."""


def _key_of(manifest: dict[str, Any] | None) -> str:
    """``name#version`` from a package.json (what a source holds)."""
    if manifest is None:
        return "no readable package.json"
    return f"{manifest.get('name')}#{manifest.get('version')}"


def _copy_tree(source: Path, into: Path) -> None:
    """Directories and regular files (symbolic links followed); anything else is skipped."""
    for path in sorted(source.rglob("*")):
        target = into / path.relative_to(source)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif path.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)


class DirectorySource:
    """A package cache folder, or a folder holding one package."""

    def __init__(self, path: Path) -> None:
        self.path = path.expanduser()
        self.label = str(self.path)
        if not self.path.is_dir():
            raise InstallError(f"{self.label}: no such folder")

    def _single(self) -> tuple[Path, bool] | None:
        """(root, root_is_package_folder) when the folder is one package."""
        if (self.path / "package" / "package.json").is_file():
            return self.path, False
        if (self.path / "package.json").is_file():
            return self.path, True
        return None

    def fetch(self, ref: Ref, into: Path, scratch: Path, listener: Listener) -> None:
        listener.fetching(ref, self.label)
        try:
            single = self._single()
            if single is not None:
                root, is_package_folder = single
                package = root if is_package_folder else root / "package"
                manifest = read_json(package / "package.json")
                if _key_of(manifest) != ref.key:
                    raise NotHere(f"{self.label} holds {_key_of(manifest)}")
                _copy_tree(root, into / "package" if is_package_folder else into)
                return
            folder = self.path / ref.key
            if not (folder / "package").is_dir():
                raise NotHere(f"not in {self.label}")
            _copy_tree(folder, into)
        except OSError as exc:
            raise InstallError(f"{self.label}: cannot copy {ref.key}: {exc}") from exc


class TarballSource:
    """One package tarball (``.tgz``)."""

    def __init__(self, path: Path) -> None:
        self.path = path.expanduser()
        self.label = str(self.path)
        if not self.path.is_file():
            raise InstallError(f"{self.label}: no such file or folder")
        self._manifest: dict[str, Any] | None = None

    def fetch(self, ref: Ref, into: Path, scratch: Path, listener: Listener) -> None:
        listener.fetching(ref, self.label)
        if self._manifest is None:
            self._manifest = _tarball.read_manifest(self.path, self.label)
        if _key_of(self._manifest) != ref.key:
            raise NotHere(f"{self.label} holds {_key_of(self._manifest)}")
        _tarball.unpack(self.path, into, self.label)


class RegistrySource:
    """A FHIR package registry: ``GET {url}/{name}/{version}`` answers the tarball."""

    def __init__(self, url: str, *, timeout: httpx.Timeout = TIMEOUT) -> None:
        if not url.startswith(("http://", "https://")):
            raise InstallError(f"registry URL must start with http:// or https://: {url!r}")
        self.url = url.rstrip("/")
        self.label = self.url
        self.timeout = timeout
        self._unreachable: str | None = None  # after one connection failure, do not retry

    def fetch(self, ref: Ref, into: Path, scratch: Path, listener: Listener) -> None:
        if self._unreachable:
            raise InstallError(self._unreachable)
        listener.fetching(ref, self.label)
        url = f"{self.url}/{ref.name}/{ref.version}"
        download = scratch / "download.tgz"
        try:
            self._download(ref, url, download, listener)
        except httpx.TransportError as exc:
            what = "timed out" if isinstance(exc, httpx.TimeoutException) else str(exc)
            self._unreachable = (
                f"cannot reach the FHIR package registry {self.url} ({what or type(exc).__name__})"
                "; without network use --from DIR_OR_TGZ"
            )
            raise InstallError(self._unreachable) from exc
        except OSError as exc:
            raise InstallError(f"cannot save the download of {url}: {exc}") from exc
        _tarball.unpack(download, into, url)

    def _download(self, ref: Ref, url: str, download: Path, listener: Listener) -> None:
        headers = {"Accept": "application/tar+gzip, application/gzip;q=0.9, */*;q=0.1"}
        with (
            httpx.Client(timeout=self.timeout, follow_redirects=True) as client,
            client.stream("GET", url, headers=headers) as response,
        ):
            if response.status_code in (404, 410):
                raise NotHere(f"not in the registry {self.url} (HTTP {response.status_code})")
            if response.status_code != 200:
                raise InstallError(f"the registry answered HTTP {response.status_code} for {url}")
            length = response.headers.get("content-length")
            total = int(length) if length and length.isdigit() else None
            done = 0
            with download.open("wb") as out:
                for chunk in response.iter_bytes():
                    done += len(chunk)
                    if done > MAX_DOWNLOAD_BYTES:
                        raise InstallError(f"{url}: refused, larger than 1 GiB")
                    out.write(chunk)
                    listener.received(ref, done, total)
