"""The formats by name: ``fhir-server ingest --format NAME`` and ``$ingest?format=NAME``.

Each mapping module (one per format, any module of this package but the shared ones below)
registers its mapper when imported; ``formats()`` imports them all.
"""

from __future__ import annotations

import importlib
import pkgutil

import mappings
from mappings.contract import Mapper

# the package's shared modules: every other module is one format's
SHARED = frozenset({"contract", "registry", "sas", "localtime", "jsoninput"})

_MAPPERS: dict[str, Mapper] = {}


def register(mapper: Mapper) -> Mapper:
    if mapper.name in _MAPPERS and _MAPPERS[mapper.name] is not mapper:
        raise ValueError(f"two mappers named {mapper.name!r}")
    _MAPPERS[mapper.name] = mapper
    return mapper


def formats() -> dict[str, Mapper]:
    """Every known format, by name."""
    for module in pkgutil.iter_modules(mappings.__path__):
        if module.name not in SHARED and not module.name.startswith("_"):
            importlib.import_module(f"mappings.{module.name}")
    return dict(sorted(_MAPPERS.items()))


def mapper(name: str) -> Mapper:
    """The mapper of ``name``; ``KeyError`` naming the known formats otherwise."""
    known = formats()
    if name not in known:
        raise KeyError(f"unknown format {name!r} (known: {', '.join(known) or 'none'})")
    return known[name]
