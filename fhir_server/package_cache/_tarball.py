"""Safe reading of FHIR package tarballs (``.tgz`` with members under ``package/``).

``tarfile.extractall`` trusts the archive; a package tarball comes from a registry or a file
someone handed over, so each member is checked before anything is written: no absolute path,
no ``..``, only directories and regular files (no links, devices or FIFOs), and a ceiling on
the unpacked size. Files are written by this code into a directory the caller owns.
"""

from __future__ import annotations

import gzip
import re
import shutil
import tarfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Any

import orjson

from fhir_server.package_cache.errors import InstallError

MAX_UNPACKED_BYTES = 2 * 1024**3  # hl7.fhir.r4.core unpacks to about 80 MB
_DRIVE = re.compile(r"^[A-Za-z]:")
_CORRUPT = (tarfile.TarError, gzip.BadGzipFile, EOFError, zlib.error)


def _member_path(member: tarfile.TarInfo, label: str) -> PurePosixPath | None:
    """The member's relative path, or None for the archive root (``.``, ``./``)."""
    name = member.name
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        raise InstallError(f"{label}: refused, member {name!r} has an absolute path")
    parts = [p for p in PurePosixPath(name).parts if p != "."]
    if ".." in parts or any(".." in p.split("\\") for p in parts):
        raise InstallError(f"{label}: refused, member {name!r} points outside the package (..)")
    return PurePosixPath(*parts) if parts else None


def _first_line(exc: BaseException) -> str:
    """Errors are one line; tarfile lists every compression it tried on the next ones."""
    lines = str(exc).strip().splitlines()
    return lines[0].rstrip(":") if lines else type(exc).__name__


def _kind(member: tarfile.TarInfo) -> str:
    if member.issym():
        return "a symbolic link"
    if member.islnk():
        return "a hard link"
    if member.isfifo():
        return "a FIFO"
    if member.isdev():
        return "a device"
    return "not a regular file"


def unpack(archive: Path, into: Path, label: str) -> None:
    """Extract every member of ``archive`` into the existing directory ``into``."""
    total = 0
    try:
        with tarfile.open(archive, mode="r:*") as tar:
            for member in tar:
                relative = _member_path(member, label)
                if relative is None:
                    continue
                target = into.joinpath(*relative.parts)
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                if not member.isreg():
                    raise InstallError(
                        f"{label}: refused, member {member.name!r} is {_kind(member)}"
                    )
                total += member.size
                if total > MAX_UNPACKED_BYTES:
                    raise InstallError(f"{label}: refused, unpacks to more than 2 GiB")
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                if source is None:  # pragma: no cover - isreg() members always have data
                    raise InstallError(f"{label}: member {member.name!r} has no data")
                with source, target.open("wb") as out:
                    shutil.copyfileobj(source, out)
    except _CORRUPT as exc:
        reason = _first_line(exc)
        raise InstallError(f"{label}: not a valid package tarball ({reason})") from exc
    except OSError as exc:
        raise InstallError(f"{label}: cannot unpack: {exc}") from exc


def read_manifest(archive: Path, label: str) -> dict[str, Any]:
    """``package/package.json`` of the tarball, without unpacking anything."""
    try:
        with tarfile.open(archive, mode="r:*") as tar:
            for member in tar:
                relative = _member_path(member, label)
                if relative == PurePosixPath("package", "package.json") and member.isreg():
                    source = tar.extractfile(member)
                    data = orjson.loads(source.read()) if source else None
                    if not isinstance(data, dict):
                        raise InstallError(f"{label}: package/package.json is not a JSON object")
                    return data
    except _CORRUPT as exc:
        reason = _first_line(exc)
        raise InstallError(f"{label}: not a valid package tarball ({reason})") from exc
    except orjson.JSONDecodeError as exc:
        raise InstallError(f"{label}: package/package.json is not valid JSON ({exc})") from exc
    except OSError as exc:
        raise InstallError(f"{label}: cannot read: {exc}") from exc
    raise InstallError(f"{label}: no package/package.json, not a FHIR package tarball")
