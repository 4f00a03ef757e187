"""Chained and reverse-chained parameter names -> reference paths (pure: no SQL, no I/O).

https://hl7.org/fhir/R4/search.html#chaining and #has. A name is read left to right:

- ``code[:Type].rest``: a forward hop. ``code`` is a reference parameter of the current
  resources; ``rest`` applies to the resources it points at (``:Type`` only, or else every
  declared target type that ``rest`` makes sense on);
- ``_has:Type:code:rest``: a reverse hop. ``rest`` applies to resources of ``Type`` whose
  ``code`` reference points at the current resources;
- ``code[:modifier]``: the parameter that finally takes the value.

So ``schedule.actor:Practitioner.identifier`` on Slot is two forward hops then a token, and
``_has:Slot:schedule:_has:Appointment:slot:status`` two reverse hops then a token. A hop
through an unknown or non-reference parameter is a 400 naming it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fhir_server.core import errors
from fhir_server.core.types import SERVED_TYPES
from fhir_server.search.registry.parameters import Registry, SearchParameter

MAX_LINKS = 6  # deeper chains are refused (each hop is one more nested subquery)
_TYPE = re.compile(r"[A-Z][A-Za-z]+\Z")
_CODE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")


@dataclass(frozen=True, slots=True)
class Link:
    """One reference step. Either way the index rows read are those of ``code`` on
    resources of ``sources`` pointing at resources of ``targets``.

    Forward (``reverse`` False): from the current resources (``sources``) to what their
    ``code`` references point at (``targets``). Reverse (``_has``): from the current
    resources (``targets``) back to the resources of ``sources`` (one type) that point at
    them. ``type`` is the ``:Type`` written on a forward hop, kept to render the name back.
    """

    code: str
    sources: tuple[str, ...]
    targets: tuple[str, ...]
    reverse: bool = False
    type: str | None = None

    def __str__(self) -> str:
        if self.reverse:
            return f"_has:{self.sources[0]}:{self.code}:"
        return f"{self.code}:{self.type}." if self.type else f"{self.code}."


@dataclass(frozen=True, slots=True)
class Path:
    """A resolved name: the hops, then ``param`` (with ``modifier``) on resources of
    ``res_types`` (the types the last hop reaches, or the searched type)."""

    links: tuple[Link, ...]
    res_types: tuple[str, ...]
    param: SearchParameter
    modifier: str | None


def is_chained(name: str) -> bool:
    return "." in name or name.startswith("_has:") or name == "_has"


def _bad(name: str, message: str, code: str = "invalid") -> errors.FhirError:
    error: errors.FhirError = errors.incorrect(
        f"search parameter {name!r}: {message}", code=code, expression=[name]
    )
    return error


def resolve(registry: Registry, res_type: str, name: str) -> Path:
    """The path ``name`` stands for on ``res_type``; raises a 400 naming what is wrong."""
    return _Resolver(registry, name).walk((res_type,), name, 0)[1]


class _Resolver:
    """Reads a name step by step. Each step returns the types it can start from (a subset
    of those it was given: ``actor.name`` only starts from the actor types that have a
    ``name``) and the rest of the path; nothing viable is a 400."""

    def __init__(self, registry: Registry, name: str) -> None:
        self.registry, self.name = registry, name

    def served(self, res_type: str) -> bool:
        return bool(self.registry.for_type(res_type))

    def walk(self, types: tuple[str, ...], text: str, depth: int) -> tuple[tuple[str, ...], Path]:
        hop = text.startswith("_has:") or text == "_has"
        head, dot, rest = text.partition(".")
        if (hop or dot) and depth >= MAX_LINKS:
            raise _bad(self.name, f"more than {MAX_LINKS} chained steps", "too-costly")
        if hop:
            return self.reverse(types, text, depth)
        if dot:
            return self.forward(types, head, rest, depth)
        return self.terminal(types, text)

    def terminal(self, types: tuple[str, ...], text: str) -> tuple[tuple[str, ...], Path]:
        code, _, modifier = text.partition(":")
        found = [(t, p) for t in types if (p := self.registry.get(t, code)) is not None]
        if not _CODE.match(code) or not found:
            raise _bad(self.name, f"unknown parameter {code!r} on {' or '.join(types)}")
        kinds = sorted({p.type for _, p in found})
        if len(kinds) > 1:
            raise _bad(
                self.name,
                f"{code!r} is a {' or a '.join(kinds)} parameter depending on the type: "
                "name the type with :Type on the previous step",
            )
        res_types = tuple(t for t, _ in found)
        return res_types, Path((), res_types, found[0][1], modifier or None)

    def forward(
        self, types: tuple[str, ...], head: str, rest: str, depth: int
    ) -> tuple[tuple[str, ...], Path]:
        code, colon, type_ = head.partition(":")
        if colon and not _TYPE.match(type_):
            raise _bad(self.name, f"{head!r}: only a resource type may follow ':' in a chain")
        params = [(t, p) for t in types if (p := self.registry.get(t, code)) is not None]
        if not _CODE.match(code) or not params:
            raise _bad(self.name, f"unknown parameter {code!r} on {' or '.join(types)}")
        refs = [(t, p) for t, p in params if p.type == "reference"]
        if not refs:
            kind = params[0][1].type
            raise _bad(self.name, f"{code!r} is a {kind} parameter, not a reference: no chain")
        if colon:
            refs = [(t, p) for t, p in refs if not p.target or type_ in p.target]
            if not refs or not self.served(type_):
                raise _bad(self.name, f"{code!r} cannot point to {type_}")
            candidates = [type_]
        else:
            candidates = []
            for _, p in refs:
                for t in p.target or SERVED_TYPES:
                    if self.served(t) and t not in candidates:
                        candidates.append(t)
            if not candidates:
                raise _bad(self.name, f"{code!r} points to no resource type this server has")
        reached, inner = self.walk(tuple(candidates), rest, depth + 1)
        sources = tuple(t for t, p in refs if not p.target or set(p.target) & set(reached))
        link = Link(code, sources, reached, reverse=False, type=type_ or None)
        return sources, Path((link, *inner.links), inner.res_types, inner.param, inner.modifier)

    def reverse(
        self, types: tuple[str, ...], text: str, depth: int
    ) -> tuple[tuple[str, ...], Path]:
        parts = text.split(":", 3)
        if len(parts) < 4 or not parts[3]:
            raise _bad(self.name, "expected _has:Type:reference:parameter")
        _, source, code, rest = parts
        if not _TYPE.match(source) or not self.served(source):
            raise _bad(self.name, f"unknown resource type {source!r}")
        param = self.registry.get(source, code)
        if param is None or not _CODE.match(code):
            raise _bad(self.name, f"unknown parameter {code!r} on {source}")
        if param.type != "reference":
            raise _bad(self.name, f"{source}.{code} is a {param.type} parameter, not a reference")
        targets = tuple(t for t in types if not param.target or t in param.target)
        if not targets:
            raise _bad(self.name, f"{source}.{code} never points to {' or '.join(types)}")
        _, inner = self.walk((source,), rest, depth + 1)
        link = Link(code, (source,), targets, reverse=True)
        return targets, Path((link, *inner.links), inner.res_types, inner.param, inner.modifier)
