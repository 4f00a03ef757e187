"""The formats by name: ``fhir-server ingest --format NAME`` and ``$ingest?format=NAME``.

Each mapping module registers its mapper when imported; ``formats()`` imports them all.
"""

from __future__ import annotations

import importlib

from mappings.contract import Mapper

# module (under mappings/) of each format; a format is listed once its module exists
MODULES: tuple[str, ...] = ()

_MAPPERS: dict[str, Mapper] = {}


def register(mapper: Mapper) -> Mapper:
    if mapper.name in _MAPPERS and _MAPPERS[mapper.name] is not mapper:
        raise ValueError(f"two mappers named {mapper.name!r}")
    _MAPPERS[mapper.name] = mapper
    return mapper


def formats() -> dict[str, Mapper]:
    """Every known format, by name."""
    for module in MODULES:
        importlib.import_module(f"mappings.{module}")
    return dict(sorted(_MAPPERS.items()))


def mapper(name: str) -> Mapper:
    """The mapper of ``name``; ``KeyError`` naming the known formats otherwise."""
    known = formats()
    if name not in known:
        raise KeyError(f"unknown format {name!r} (known: {', '.join(known) or 'none'})")
    return known[name]
