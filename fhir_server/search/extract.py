"""Evaluate search parameter expressions against a resource.

Most R4 expressions are plain paths (``Slot.start``, ``Location.address.city``), unions of
paths (``Location.name | Location.alias``) or paths with a simple filter
(``.where(system='email')``, ``.where(resolve() is Location)``). Those are compiled once into
direct dictionary walks that also know the FHIR type of what they return (from the generated
element table). Anything else falls back to ``fhirpathpy``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

import profiles

Value = tuple[Any, str]  # (JSON value, FHIR type name or "" when unknown)
Extractor = Callable[[dict[str, Any]], list[Value]]

_STEP = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")
_WHERE_EQ = re.compile(r"^where\((\w+)\s*=\s*'([^']*)'\)$")
_WHERE_RESOLVE = re.compile(r"^where\(resolve\(\)\s+is\s+(\w+)\)$")
_AS = re.compile(r"^\((\w+(?:\.\w+)*)\s+as\s+(\w+)\)$")


@dataclass(frozen=True)
class _Path:
    steps: tuple[str, ...]  # after the resource type
    where_eq: tuple[str, str] | None = None
    resolve_is: str | None = None
    cast: str | None = None


def _element_type(root: str, steps: tuple[str, ...], cast: str | None) -> str:
    if cast:
        return cast
    types: dict[str, dict[str, Any]] = profiles.r4_elements()["types"]
    current, prefix = root, ""
    ftype = ""
    for step in steps:
        table = types.get(current, {})
        key = f"{prefix}.{step}" if prefix else step
        info = table.get(key) or table.get(f"{key}[x]")
        if info is None:
            return ""
        if "ref" in info:
            prefix = info["ref"]
            ftype = "BackboneElement"
            continue
        ftype = info["types"][0] if len(info["types"]) == 1 else ""
        if ftype in ("BackboneElement", "Element"):
            prefix = key
        else:
            current, prefix = ftype, ""
    return ftype


def _split_union(expression: str) -> list[str]:
    return [p.strip() for p in expression.split("|") if p.strip()]


def _parse_path(part: str, res_type: str) -> _Path | None:
    cast = None
    m = _AS.match(part)
    if m:
        part, cast = m.group(1), m.group(2)
    where_eq = resolve_is = None
    if ".where(" in part:
        part, _, tail = part.partition(".where(")
        tail = "where(" + tail
        if (w := _WHERE_EQ.match(tail)) is not None:
            where_eq = (w.group(1), w.group(2))
        elif (r := _WHERE_RESOLVE.match(tail)) is not None:
            resolve_is = r.group(1)
        else:
            return None
    steps = part.split(".")
    if steps[0] not in (res_type, "Resource") or not all(_STEP.match(s) for s in steps[1:]):
        return None
    return _Path(tuple(steps[1:]), where_eq, resolve_is, cast)


def _walk(node: Any, steps: tuple[str, ...]) -> Iterator[Any]:
    if not steps:
        if isinstance(node, list):
            yield from node
        else:
            yield node
        return
    items = node if isinstance(node, list) else [node]
    step, rest = steps[0], steps[1:]
    for item in items:
        if not isinstance(item, dict):
            continue
        if step in item:
            yield from _walk(item[step], rest)
        elif not rest:
            # choice element named without its type (e.g. Observation.value -> valueQuantity)
            for key, value in item.items():
                if key.startswith(step) and key[len(step) : len(step) + 1].isupper():
                    yield from _walk(value, rest)


def _reference_type(value: Any) -> str | None:
    if isinstance(value, dict) and isinstance(value.get("reference"), str):
        parts: list[str] = value["reference"].split("/")
        if len(parts) >= 4 and parts[-2] == "_history":  # Type/id/_history/version
            return parts[-4]
        if len(parts) >= 2:
            return parts[-2]
    if isinstance(value, dict) and isinstance(value.get("type"), str):
        return str(value["type"])
    return None


def _compiled_path(path: _Path, ftype: str) -> Extractor:
    def run(resource: dict[str, Any]) -> list[Value]:
        out: list[Value] = []
        for value in _walk(resource, path.steps):
            if path.where_eq is not None:
                key, expected = path.where_eq
                if not isinstance(value, dict) or value.get(key) != expected:
                    continue
            if path.resolve_is is not None and _reference_type(value) != path.resolve_is:
                continue
            out.append((value, ftype))
        return out

    return run


def _fhirpath(expression: str) -> Extractor:
    import fhirpathpy

    compiled = fhirpathpy.compile(expression)

    def run(resource: dict[str, Any]) -> list[Value]:
        try:
            return [(v, "") for v in compiled(resource, {})]
        except Exception:  # fhirpathpy raises plain exceptions on odd data
            return []

    return run


@cache
def compile_expression(res_type: str, expression: str) -> Extractor:
    """An extractor for ``expression`` evaluated on resources of ``res_type``."""
    if not expression:
        return lambda _resource: []
    parts = []
    for part in _split_union(expression):
        path = _parse_path(part, res_type)
        if path is None:
            return _fhirpath(expression)
        parts.append(_compiled_path(path, _element_type(res_type, path.steps, path.cast)))
    if len(parts) == 1:
        return parts[0]

    def union(resource: dict[str, Any]) -> list[Value]:
        return [v for p in parts for v in p(resource)]

    return union


def is_compiled(res_type: str, expression: str) -> bool:
    """True when the expression runs as a direct walk (for the query plan explanation)."""
    return all(_parse_path(p, res_type) is not None for p in _split_union(expression))
