"""ValueSet expansion against the local CodeSystems, for binding checks.

Supported in ``compose.include``/``exclude``: a whole code system, an explicit concept
list, other ValueSets (``valueSet``, intersected as the spec says), and the filters
``is-a``, ``descendent-of``, ``is-not-a``, ``=``, ``in``, ``regex`` and ``exists``; an
already expanded ValueSet (``expansion.contains``) is read as is.

A system that cannot be enumerated (its CodeSystem is not loaded, is only a fragment, or a
filter is not understood) leaves the expansion *open* for that system: membership is then
unknown (``None``) rather than false, so a missing terminology never rejects a code.
Expansions are cached per ValueSet URL.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from fhir_server.validation.packages import Conformance


@dataclass
class Expansion:
    """The codes of a ValueSet, per system."""

    url: str
    codes: dict[str, set[str]] = field(default_factory=dict)
    open_systems: set[str] = field(default_factory=set)  # membership unknown there
    folded: set[str] = field(default_factory=set)  # case-insensitive systems (codes lowercased)

    def contains(self, system: Any, code: str) -> bool | None:
        """Is ``system|code`` in the ValueSet? ``None`` when it cannot be told."""
        if system is None:
            return self.has_code(code)
        if not isinstance(system, str):
            return False
        if system in self.open_systems:
            return None
        codes = self.codes.get(system)
        if codes is None:
            return False
        return (code.lower() if system in self.folded else code) in codes

    def has_code(self, code: str) -> bool | None:
        """A bare code (``code`` elements): in the ValueSet under any system?"""
        for system, codes in self.codes.items():
            if (code.lower() if system in self.folded else code) in codes:
                return True
        return None if self.open_systems else False

    def has_system(self, system: str) -> bool:
        return system in self.codes or system in self.open_systems

    @property
    def systems(self) -> list[str]:
        return sorted({*self.codes, *self.open_systems})

    def add(self, system: str, codes: Iterable[str]) -> None:
        target = self.codes.setdefault(system, set())
        if system in self.folded:
            target.update(c.lower() for c in codes)
        else:
            target.update(codes)


@dataclass
class _System:
    """A CodeSystem flattened: codes, parent links and properties."""

    url: str
    enumerable: bool
    case_sensitive: bool
    codes: list[str] = field(default_factory=list)
    children: dict[str, list[str]] = field(default_factory=dict)
    properties: dict[str, dict[str, set[str]]] = field(default_factory=dict)  # code->prop->vals

    def descendants(self, code: str) -> set[str]:
        out: set[str] = set()
        stack = list(self.children.get(code, ()))
        while stack:
            c = stack.pop()
            if c not in out:
                out.add(c)
                stack.extend(self.children.get(c, ()))
        return out


def _property_value(prop: dict[str, Any]) -> str | None:
    for key, value in prop.items():
        if key.startswith("value") and isinstance(value, str | bool | int | float):
            return str(value).lower() if isinstance(value, bool) else str(value)
        if key == "valueCoding" and isinstance(value, dict):
            return str(value.get("code"))
    return None


def _flatten(cs: dict[str, Any]) -> _System:
    system = _System(
        url=str(cs.get("url")),
        enumerable=cs.get("content", "complete") == "complete",
        case_sensitive=cs.get("caseSensitive") is not False,
    )
    stack: list[tuple[Any, str | None]] = [(c, None) for c in cs.get("concept") or ()]
    while stack:
        concept, parent = stack.pop()
        if not isinstance(concept, dict) or not isinstance(concept.get("code"), str):
            continue
        code = concept["code"]
        system.codes.append(code)
        if parent is not None:
            system.children.setdefault(parent, []).append(code)
        props = system.properties.setdefault(code, {})
        for prop in concept.get("property") or ():
            if not isinstance(prop, dict):
                continue
            value = _property_value(prop)
            if value is None:
                continue
            name = str(prop.get("code"))
            props.setdefault(name, set()).add(value)
            if name in ("parent", "subsumedBy"):
                system.children.setdefault(value, []).append(code)
            elif name == "child":
                system.children.setdefault(code, []).append(value)
        stack.extend((c, code) for c in concept.get("concept") or ())
    return system


class Terminology:
    """Expansions of the ValueSets in a ``Conformance`` index, computed once each."""

    def __init__(self, conformance: Conformance) -> None:
        self.conformance = conformance
        self._expansions: dict[str, Expansion | None] = {}
        self._systems: dict[str, _System | None] = {}
        self._building: set[str] = set()
        self._lock = threading.RLock()

    def expansion(self, url: str) -> Expansion | None:
        """``None`` when the ValueSet is not available."""
        if url in self._expansions:
            return self._expansions[url]
        with self._lock:  # validations may run in threads: one expands, others wait
            if url in self._expansions:
                return self._expansions[url]
            if url in self._building:
                return None  # a ValueSet that includes itself
            self._building.add(url)
            try:
                result = self._expand(url)
            finally:
                self._building.discard(url)
            self._expansions[url] = result
            return result

    def code_system(self, url: str) -> _System | None:
        if url not in self._systems:
            cs = self.conformance.code_system(url)
            self._systems[url] = _flatten(cs) if cs is not None else None
        return self._systems[url]

    def _expand(self, url: str) -> Expansion | None:
        vs = self.conformance.value_set(url)
        if vs is None:
            return None
        out = Expansion(url)
        compose = vs.get("compose")
        if isinstance(compose, dict):
            for include in compose.get("include") or ():
                if isinstance(include, dict):
                    self._include(out, include)
            for exclude in compose.get("exclude") or ():
                if isinstance(exclude, dict):
                    self._exclude(out, exclude)
            return out
        expansion = vs.get("expansion")
        if isinstance(expansion, dict):
            self._contains(out, expansion.get("contains") or ())
            return out
        return None  # neither compose nor expansion: nothing to check against

    def _contains(self, out: Expansion, items: Iterable[Any]) -> None:
        for item in items:
            if not isinstance(item, dict):
                continue
            if isinstance(item.get("system"), str) and isinstance(item.get("code"), str):
                out.add(item["system"], [item["code"]])
            self._contains(out, item.get("contains") or ())

    def _codes(self, include: dict[str, Any]) -> tuple[str, set[str] | None] | None:
        """(system, codes) an include/exclude selects; codes None = not enumerable."""
        system = include.get("system")
        if not isinstance(system, str):
            return None
        concepts = include.get("concept")
        if concepts:
            return system, {c["code"] for c in concepts if isinstance(c, dict) and "code" in c}
        cs = self.code_system(system)
        if cs is None or not cs.enumerable:
            return system, None
        selected = set(cs.codes)
        for flt in include.get("filter") or ():
            chosen = _filter(cs, flt) if isinstance(flt, dict) else None
            if chosen is None:
                return system, None
            selected &= chosen
        return system, selected

    def _include(self, out: Expansion, include: dict[str, Any]) -> None:
        picked = self._codes(include)
        imports = [v for v in include.get("valueSet") or () if isinstance(v, str)]
        if picked is None and not imports:
            return
        if picked is not None:
            system, codes = picked
            cs = self.code_system(system)
            if cs is not None and not cs.case_sensitive:
                out.folded.add(system)
            if codes is None:
                out.open_systems.add(system)
                return
            if not imports:
                out.add(system, codes)
                return
        # valueSet imports: the intersection of them (and of the system part, if any).
        parts = [self.expansion(v) for v in imports]
        if any(p is None for p in parts):
            for p in parts:
                if p is not None:
                    out.open_systems.update(p.systems)
            if picked is not None:
                out.open_systems.add(picked[0])
            return
        merged = _intersect([p for p in parts if p is not None])
        if picked is not None:
            system, codes = picked
            merged.codes = {system: merged.codes.get(system, set()) & (codes or set())}
            merged.open_systems &= {system}
        for system, codes in merged.codes.items():
            out.add(system, codes)
        out.open_systems |= merged.open_systems

    def _exclude(self, out: Expansion, exclude: dict[str, Any]) -> None:
        picked = self._codes(exclude)
        if picked is None:
            return
        system, codes = picked
        if codes is None:
            return  # cannot tell what is excluded: keep the codes (never reject wrongly)
        if system in out.codes:
            folded = {c.lower() for c in codes} if system in out.folded else codes
            out.codes[system] -= folded


def _intersect(parts: list[Expansion]) -> Expansion:
    first, rest = parts[0], parts[1:]
    out = Expansion(first.url, {s: set(c) for s, c in first.codes.items()}, set(first.open_systems))
    for part in rest:
        out.codes = {s: c & part.codes[s] for s, c in out.codes.items() if s in part.codes}
        out.open_systems &= part.open_systems | set(part.codes)
    return out


def _filter(cs: _System, flt: dict[str, Any]) -> set[str] | None:
    """Codes a filter selects; ``None`` when the filter is not understood."""
    prop, op, value = flt.get("property"), flt.get("op"), flt.get("value")
    if not isinstance(value, str):
        return None
    if prop in ("concept", "code"):
        if op == "is-a":
            return {value} | cs.descendants(value) if value in cs.codes else set()
        if op == "descendent-of":
            return cs.descendants(value)
        if op == "is-not-a":
            return set(cs.codes) - ({value} | cs.descendants(value))
        if op == "in":
            return {v.strip() for v in value.split(",")} & set(cs.codes)
        if op == "=":
            return {value} & set(cs.codes)
        if op == "regex":
            try:
                pattern = re.compile(value)
            except re.error:
                return None
            return {c for c in cs.codes if pattern.fullmatch(c)}
        return None
    if not isinstance(prop, str):
        return None
    if op == "=":
        return {c for c, props in cs.properties.items() if value in props.get(prop, ())}
    if op == "in":
        wanted = {v.strip() for v in value.split(",")}
        return {c for c, props in cs.properties.items() if wanted & props.get(prop, set())}
    if op == "exists":
        present = value == "true"
        return {c for c in cs.codes if (prop in cs.properties.get(c, {})) == present}
    return None
