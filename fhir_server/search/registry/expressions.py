"""Evaluate search parameter expressions against a resource.

Most expressions are plain paths (``Slot.start``, ``Location.address.city``), unions of
paths (``Location.name | Location.alias``) or paths with simple filters anywhere along them:
``.where(system='email')``, ``.where(resolve() is Location)``,
``.extension.where(url='...').value`` or ``.extension('...').value`` (the SAS CPTS
``service-type-reference``). Paths may name the resource type first or start relative to it
(package SearchParameters do both). Those are compiled once into direct dictionary walks that
also know the FHIR type of what they return: from the generated element table, or from the
JSON key for a choice element (``value`` found as ``valueReference`` is a ``Reference``).

Anything else (functions, indexes, arithmetic) falls back to ``fhirpathpy`` with the R4 model,
which is what lets it see ``value`` as ``value[x]`` too.

This module sits with the registry, below indexing: the registry only takes a package's
parameter when its expression can be evaluated here (``check_expression``), and the indexer
evaluates them (``compile_expression``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import profiles

Value = tuple[Any, str]  # (JSON value, FHIR type name or "" when unknown)
Extractor = Callable[[dict[str, Any]], list[Value]]

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_LITERAL = r"'([^'\\]*)'"
_WHERE_EQ = re.compile(rf"^where\(\s*(\w+)\s*=\s*{_LITERAL}\s*\)$")
_WHERE_RESOLVE = re.compile(r"^where\(\s*resolve\(\)\s+is\s+(\w+)\s*\)$")
_EXTENSION = re.compile(rf"^extension\(\s*{_LITERAL}\s*\)$")
_CAST_CALL = re.compile(r"^(?:as|ofType)\(\s*(\w+)\s*\)$")
_CAST_WRAP = re.compile(r"^\((.+)\s+as\s+(\w+)\)$", re.DOTALL)
_ROOTS = ("Resource", "DomainResource")


@dataclass(frozen=True)
class _Child:
    name: str
    choice: bool  # a ``name[x]`` element (or one the element table does not know)


@dataclass(frozen=True)
class _WhereEq:
    key: str
    literal: str


@dataclass(frozen=True)
class _ResolveIs:
    res_type: str


@dataclass(frozen=True)
class _Cast:
    type_name: str


_Step = _Child | _WhereEq | _ResolveIs | _Cast


def _split_top(text: str, sep: str) -> list[str]:
    """Split at ``sep`` outside quotes and parentheses (URLs in literals hold dots)."""
    parts, depth, quoted, start = [], 0, False, 0
    for i, char in enumerate(text):
        if char == "'":
            quoted = not quoted
        elif quoted:
            continue
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts]


def split_union(expression: str) -> list[str]:
    return [p for p in _split_top(expression, "|") if p]


def _parse_steps(branch: str, res_type: str) -> list[_Step | str] | None:
    """The steps of one union branch; child names stay plain strings until typed."""
    cast = None
    if (wrap := _CAST_WRAP.match(branch)) is not None:
        branch, cast = wrap.group(1).strip(), wrap.group(2)
    tokens = _split_top(branch, ".")
    if not tokens or not all(tokens):
        return None
    if tokens[0] in (res_type, *_ROOTS):
        tokens = tokens[1:]
    elif tokens[0][:1].isupper():
        return None  # another type's path: leave it to fhirpathpy
    steps: list[_Step | str] = []
    for token in tokens:
        if _NAME.match(token):
            steps.append(token)
        elif (m := _WHERE_EQ.match(token)) is not None:
            steps.append(_WhereEq(m.group(1), m.group(2)))
        elif (m := _WHERE_RESOLVE.match(token)) is not None:
            steps.append(_ResolveIs(m.group(1)))
        elif (m := _EXTENSION.match(token)) is not None:
            steps.extend(["extension", _WhereEq("url", m.group(1))])
        elif (m := _CAST_CALL.match(token)) is not None:
            steps.append(_Cast(m.group(1)))
        else:
            return None
    if cast is not None:
        steps.append(_Cast(cast))
    return steps


def _typed(res_type: str, raw: list[_Step | str]) -> tuple[tuple[_Step, ...], str]:
    """Mark choice elements and find the static FHIR type of the result (element table)."""
    types: dict[str, dict[str, Any]] = profiles.r4_elements()["types"]
    current: str | None = res_type  # None once the table has lost track
    prefix, ftype = "", res_type
    steps: list[_Step] = []
    for step in raw:
        if isinstance(step, _Cast):
            steps.append(step)
            ftype = step.type_name
            current, prefix = (step.type_name if step.type_name in types else None), ""
            continue
        if not isinstance(step, str):
            steps.append(step)
            continue
        key = f"{prefix}.{step}" if prefix else step
        table = types.get(current, {}) if current is not None else {}
        info, choice = table.get(key), False
        if info is None:
            info = table.get(f"{key}[x]")
            choice = True  # value[x], or unknown to the table: match valueXxx keys too
        steps.append(_Child(step, choice))
        if info is None:
            current, ftype = None, ""
        elif "ref" in info:  # contentReference: a backbone element defined elsewhere
            prefix, ftype = info["ref"], "BackboneElement"
        else:
            ftype = info["types"][0] if len(info["types"]) == 1 else ""
            if ftype in ("BackboneElement", "Element"):
                prefix = key
            elif ftype:
                current, prefix = ftype, ""
            else:
                current = None
    return tuple(steps), ftype


@cache
def _primitives() -> frozenset[str]:
    return frozenset(profiles.r4_elements()["primitives"])


def _choice_type(suffix: str) -> str:
    lowered = suffix[:1].lower() + suffix[1:]
    return lowered if lowered in _primitives() else suffix


def _flatten(value: Any, ftype: str, out: list[Value]) -> None:
    if isinstance(value, list):
        out.extend((v, ftype) for v in value)
    else:
        out.append((value, ftype))


def _child(items: list[Value], step: _Child) -> list[Value]:
    out: list[Value] = []
    for node, _ftype in items:
        if not isinstance(node, dict):
            continue
        if step.name in node:
            _flatten(node[step.name], "", out)
        elif step.choice:
            size = len(step.name)
            for key, value in node.items():
                if key.startswith(step.name) and key[size : size + 1].isupper():
                    _flatten(value, _choice_type(key[size:]), out)
    return out


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


def _run(steps: tuple[_Step, ...], static_type: str, resource: dict[str, Any]) -> list[Value]:
    items: list[Value] = [(resource, "")]
    for step in steps:
        if isinstance(step, _Child):
            items = _child(items, step)
        elif isinstance(step, _WhereEq):
            key, literal = step.key, step.literal
            items = [i for i in items if isinstance(i[0], dict) and i[0].get(key) == literal]
        elif isinstance(step, _ResolveIs):
            items = [i for i in items if _reference_type(i[0]) == step.res_type]
        else:  # a cast keeps what is known to be of that type (or cannot be told apart)
            items = [i for i in items if not i[1] or i[1] == step.type_name]
        if not items:
            return []
    return [(value, ftype or static_type) for value, ftype in items]


def _compiled_path(steps: tuple[_Step, ...], static_type: str) -> Extractor:
    def run(resource: dict[str, Any]) -> list[Value]:
        return _run(steps, static_type, resource)

    return run


@cache
def _r4_model() -> dict[str, Any]:
    from fhirpathpy.models import models

    model: dict[str, Any] = models["r4"]
    return model


def _fhirpath(expression: str) -> Extractor:
    import fhirpathpy

    compiled = fhirpathpy.compile(expression, _r4_model())

    def run(resource: dict[str, Any]) -> list[Value]:
        try:
            return [(v, "") for v in compiled(resource, {})]
        except Exception:  # fhirpathpy raises plain exceptions on odd data
            return []

    return run


def _compile_branch(res_type: str, branch: str) -> Extractor | None:
    raw = _parse_steps(branch, res_type)
    if raw is None:
        return None
    steps, static_type = _typed(res_type, raw)
    return _compiled_path(steps, static_type)


@cache
def compile_expression(res_type: str, expression: str) -> Extractor:
    """An extractor for ``expression`` evaluated on resources of ``res_type``.

    Raises whatever ``fhirpathpy`` raises for an expression it cannot parse.
    """
    if not expression:
        return lambda _resource: []
    parts = []
    for branch in split_union(expression):
        compiled = _compile_branch(res_type, branch)
        if compiled is None:
            return _fhirpath(expression)
        parts.append(compiled)
    if len(parts) == 1:
        return parts[0]

    def union(resource: dict[str, Any]) -> list[Value]:
        return [v for p in parts for v in p(resource)]

    return union


def check_expression(res_type: str, expression: str) -> None:
    """Raise ``ValueError`` when ``expression`` cannot be evaluated on ``res_type``.

    ``fhirpathpy`` recovers from many syntax errors at compile time and only fails when
    evaluating, so a fallback expression is also tried once on an empty resource.
    """
    if not expression or is_compiled(res_type, expression):
        return
    import fhirpathpy

    try:
        fhirpathpy.compile(expression, _r4_model())({"resourceType": res_type}, {})
    except Exception as exc:  # fhirpathpy raises plain exceptions
        raise ValueError(f"{expression!r}: {type(exc).__name__} {exc}") from exc


def is_compiled(res_type: str, expression: str) -> bool:
    """True when the expression runs as a direct walk (for the query plan explanation)."""
    return all(_parse_steps(b, res_type) is not None for b in split_union(expression))
