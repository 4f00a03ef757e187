"""FHIR packages in the package cache: listing, checking and installing them.

Used by ``fhir-server packages list|install|check`` and by ``fhir-server serve`` (which refuses
to start without a required package). See ``cache`` for the layout and what "required" means,
``sources`` for where packages come from.
"""

from fhir_server.package_cache.cache import (
    R4_CORE,
    Failure,
    InstallReport,
    Wanted,
    closure,
    install,
    is_installed,
    manifest_roots,
    missing_message,
    missing_required,
)
from fhir_server.package_cache.errors import InstallError
from fhir_server.package_cache.sources import DirectorySource, RegistrySource, Source, TarballSource
from fhir_server.package_cache.types import Listener, QuietListener, Ref

__all__ = [
    "R4_CORE",
    "DirectorySource",
    "Failure",
    "InstallError",
    "InstallReport",
    "Listener",
    "QuietListener",
    "Ref",
    "RegistrySource",
    "Source",
    "TarballSource",
    "Wanted",
    "closure",
    "install",
    "is_installed",
    "manifest_roots",
    "missing_message",
    "missing_required",
]
