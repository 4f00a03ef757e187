"""What the package cache code passes around: package references and progress listeners."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from fhir_server.package_cache.errors import InstallError

# Names and versions become folder names and URL path segments: no "/", no leading ".".
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


@dataclass(frozen=True)
class Ref:
    """A package name and exact version (``ans.fhir.fr.sas#1.1.0``)."""

    name: str
    version: str

    def __post_init__(self) -> None:
        if not _NAME.match(self.name) or not _VERSION.match(self.version):
            raise InstallError(f"not a FHIR package name#version: {self.name}#{self.version}")

    @property
    def key(self) -> str:
        return f"{self.name}#{self.version}"

    @classmethod
    def parse(cls, text: str) -> Ref:
        name, sep, version = text.partition("#")
        if not sep or not name or not version:
            raise InstallError(f"expected name#version (e.g. ans.fhir.fr.sas#1.1.0), got {text!r}")
        return cls(name, version)


class Listener(Protocol):
    """Progress of an install; the command line draws it."""

    def fetching(self, ref: Ref, source: str) -> None:
        """Looking for ``ref`` in ``source`` (a folder, a tarball or a registry URL)."""

    def received(self, ref: Ref, done: int, total: int | None) -> None:
        """``done`` bytes of the download received (``total`` when the server said it)."""

    def finished(self, ref: Ref, error: str | None) -> None:
        """Installed (``error`` is None) or given up."""


class QuietListener:
    """A listener that draws nothing."""

    def fetching(self, ref: Ref, source: str) -> None:
        pass

    def received(self, ref: Ref, done: int, total: int | None) -> None:
        pass

    def finished(self, ref: Ref, error: str | None) -> None:
        pass
