"""The FHIR package cache: the manifest, reading installed packages, installing the others.

The one place that knows the cache (``FHIR_PACKAGE_PATH``): search reads its SearchParameters
through it, validation its StructureDefinitions, ValueSets and CodeSystems, and the
``fhir-server packages list|install|check`` commands what is wanted and missing. Modules:
``manifest`` (``profiles/packages.toml``), ``reader`` (layout, ``package.json``, resources),
``wanted`` (what the server wants, what is missing), ``install`` with ``sources``.
"""

from fhir_server.package_cache.errors import InstallError
from fhir_server.package_cache.install import Failure, InstallReport, install
from fhir_server.package_cache.manifest import MANIFEST, PackageSpec, read_manifest
from fhir_server.package_cache.reader import (
    Entry,
    entries,
    is_installed,
    package_folder,
    package_json,
    resources,
)
from fhir_server.package_cache.sources import DirectorySource, RegistrySource, Source, TarballSource
from fhir_server.package_cache.types import Listener, QuietListener, Ref
from fhir_server.package_cache.wanted import (
    DECLARED,
    R4_CORE,
    Located,
    MissingPackage,
    Wanted,
    closure,
    locate,
    manifest_roots,
    missing_message,
    missing_required,
)

__all__ = [
    "DECLARED",
    "MANIFEST",
    "R4_CORE",
    "DirectorySource",
    "Entry",
    "Failure",
    "InstallError",
    "InstallReport",
    "Listener",
    "Located",
    "MissingPackage",
    "PackageSpec",
    "QuietListener",
    "Ref",
    "RegistrySource",
    "Source",
    "TarballSource",
    "Wanted",
    "closure",
    "entries",
    "install",
    "is_installed",
    "locate",
    "manifest_roots",
    "missing_message",
    "missing_required",
    "package_folder",
    "package_json",
    "read_manifest",
    "resources",
]
