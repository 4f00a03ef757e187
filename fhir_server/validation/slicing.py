"""Slice matchers: which slice an item of a sliced element belongs to.

Discriminators (https://hl7.org/fhir/R4/profiling.html#discriminator):

* ``value`` / ``pattern``: the slice's ``fixed[x]``/``pattern[x]`` at the path, else its
  required binding (the code must be in the ValueSet), else a pattern assembled from the
  fixed/pattern values below the path; an extension slice without a ``url`` element is
  matched on the canonical of its profile;
* ``type``: the type at the path (resource type of ``Bundle.entry.resource``, or the choice
  key ``valueReference``);
* ``profile``: the resource at the path claims the profile in ``meta.profile``, or validates
  against it without error;
* ``exists``: the path is present (slice min >= 1) or absent (max = 0).

Paths: names, ``$this``, ``resolve()``, ``ofType(T)`` and ``extension('url')``. Matchers are
built on first use, so profiles that refer to each other compile in any order.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from fhir_server.validation.compiled import (
    NOTHING,
    Element,
    Matcher,
    Profile,
    Slice,
    matches_fixed,
    matches_pattern,
)
from fhir_server.validation.terminology import Terminology

if TYPE_CHECKING:
    from fhir_server.validation.context import Frame


class Compiler(Protocol):
    """What matchers look up while they are built: ``snapshot.Compiler``, which builds them
    (hence a protocol: slicing sits below the compiler)."""

    @property
    def terminology(self) -> Terminology: ...

    def profile(self, url: str) -> Profile | None: ...


_EXTENSION_CALL = re.compile(r"^extension\('([^']*)'\)$")
_OF_TYPE = re.compile(r"^ofType\((\w+)\)$")
Test = Callable[[Any, "Frame"], bool]


def split_path(path: str) -> list[str]:
    """Dots outside parentheses and quotes separate segments."""
    out: list[str] = []
    current: list[str] = []
    depth, quoted = 0, False
    for ch in path:
        if ch == "'":
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
        if ch == "." and depth == 0 and not quoted:
            out.append("".join(current))
            current = []
        else:
            current.append(ch)
    out.append("".join(current))
    return [s for s in out if s]


# -- where the slice says what it holds ------------------------------------------------------


def _find(compiler: Compiler, element: Element, segments: list[str]) -> Element | None:
    current: Element | None = element
    for seg in segments:
        if current is None:
            return None
        if seg == "$this":
            continue
        if seg == "resolve()":
            targets = [u for t in current.types for u in t.targets]
            prof = compiler.profile(targets[0]) if len(targets) == 1 else None
            current = prof.root if prof is not None else None
            continue
        of_type = _OF_TYPE.match(seg)
        if of_type:
            current = current.type_slices.get(of_type.group(1), current)
            continue
        ext = _EXTENSION_CALL.match(seg)
        if ext:
            holder = current.child("extension")
            current = None
            for s in holder.slices if holder is not None else ():
                if _extension_url(s.element) == ext.group(1):
                    current = s.element
            continue
        current = current.child(seg)
    return current


def _extension_url(element: Element) -> str | None:
    url = element.child("url")
    if url is not None and isinstance(url.fixed, str):
        return url.fixed
    for t in element.types:
        if t.profiles:
            return t.profiles[0]
    return None


def _synthesized(element: Element) -> dict[str, Any] | None:
    """A pattern from the fixed/pattern values found below an element."""
    out: dict[str, Any] = {}
    for child in element.children:
        value = child.fixed if child.fixed is not NOTHING else child.pattern
        if value is NOTHING:
            value = _synthesized(child)
        if value is None or value is NOTHING:
            continue
        out[child.name] = [value] if child.array else value
    return out or None


# -- what the item holds -------------------------------------------------------------------


def _values(item: Any, segments: list[str], frame: Frame) -> list[tuple[Any, str | None]]:
    """(value, type) pairs at the path; the type is known for resources and choice keys."""
    current: list[tuple[Any, str | None]] = [(item, None)]
    i = 0
    while i < len(segments):
        seg = segments[i]
        nxt = segments[i + 1] if i + 1 < len(segments) else ""
        out: list[tuple[Any, str | None]] = []
        ext = _EXTENSION_CALL.match(seg)
        of_type = _OF_TYPE.match(nxt)
        for value, _ in current:
            if seg == "$this":
                out.append((value, _type_of(value)))
            elif seg == "resolve()":
                target = frame.resolve(value) if isinstance(value, dict) else None
                if target is not None:
                    out.append((target, _type_of(target)))
            elif ext:
                for e in _items(value.get("extension") if isinstance(value, dict) else None):
                    if isinstance(e, dict) and e.get("url") == ext.group(1):
                        out.append((e, "Extension"))
            elif isinstance(value, dict):
                if of_type:
                    key = seg + of_type.group(1)[:1].upper() + of_type.group(1)[1:]
                    out.extend((v, of_type.group(1)) for v in _items(value.get(key)))
                elif seg in value:
                    out.extend((v, _type_of(v)) for v in _items(value[seg]))
                else:
                    for key, v in value.items():
                        if key.startswith(seg) and key[len(seg) : len(seg) + 1].isupper():
                            code = key[len(seg) :]
                            code = code if code[1:2].isupper() else code[:1].lower() + code[1:]
                            out.extend((x, code) for x in _items(v))
        current = out
        i += 2 if of_type and not ext and seg not in ("$this", "resolve()") else 1
    return current


def _items(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _type_of(value: Any) -> str | None:
    if isinstance(value, dict) and isinstance(value.get("resourceType"), str):
        return str(value["resourceType"])
    return None


# -- the tests -----------------------------------------------------------------------------


def _value_test(compiler: Compiler, holder: Element, segments: list[str], path: str) -> Test | None:
    if holder.fixed is not NOTHING:
        fixed = holder.fixed
        return lambda item, frame: any(
            matches_fixed(v, fixed) for v, _ in _values(item, segments, frame)
        )
    if holder.pattern is not NOTHING:
        pattern = holder.pattern
        return lambda item, frame: any(
            matches_pattern(v, pattern) for v, _ in _values(item, segments, frame)
        )
    if path == "url" and holder.name == "url":
        return None  # handled by the caller (extension slices)
    binding = holder.binding
    if binding is not None and binding.strength == "required":
        expansion = compiler.terminology.expansion(binding.value_set)
        if expansion is not None:

            def in_value_set(item: Any, frame: Frame) -> bool:
                for v, _ in _values(item, segments, frame):
                    if isinstance(v, str) and expansion.has_code(v):
                        return True
                    codings = v.get("coding") if isinstance(v, dict) and "coding" in v else [v]
                    for c in _items(codings):
                        code = c.get("code") if isinstance(c, dict) else None
                        if isinstance(code, str) and expansion.contains(c.get("system"), code):
                            return True
                return False

            return in_value_set
    synthesized = _synthesized(holder)
    if synthesized is not None:
        return lambda item, frame: any(
            matches_pattern(v, synthesized) for v, _ in _values(item, segments, frame)
        )
    return None


def _test(compiler: Compiler, sl: Slice, kind: str, path: str) -> Test | None:
    segments = split_path(path)
    holder = _find(compiler, sl.element, segments)
    if kind in ("value", "pattern"):
        if segments == ["url"] and (holder is None or holder.fixed is NOTHING):
            url = _extension_url(sl.element)
            if url is None:
                return None
            return lambda item, frame: isinstance(item, dict) and item.get("url") == url
        return _value_test(compiler, holder, segments, path) if holder is not None else None
    if kind == "exists":
        if holder is None:
            return None
        want = holder.min > 0
        if not want and holder.max != 0:
            return None
        return lambda item, frame: bool(_values(item, segments, frame)) == want
    if kind == "type":
        element = holder if holder is not None else sl.element
        codes = {t.code for t in element.types}
        if not codes:
            return None
        return lambda item, frame: any(t in codes for _, t in _values(item, segments, frame))
    if kind == "profile":
        element = holder if holder is not None else sl.element
        profiles = [p for t in element.types for p in (*t.profiles, *t.targets)]
        if not profiles:
            return None

        def conforms(item: Any, frame: Frame) -> bool:
            for value, _ in _values(item, segments, frame):
                if isinstance(value, dict) and any(frame.conforms(value, p) for p in profiles):
                    return True
            return False

        return conforms
    return None


def matcher(compiler: Compiler, base: Element, sl: Slice) -> Matcher:
    """A lazy matcher for one slice of ``base`` (whose ``slicing`` is set)."""
    assert base.slicing is not None
    discriminators = base.slicing.discriminators
    tests: list[Test] | None = None

    def match(item: Any, frame: Frame) -> bool:
        nonlocal tests
        if tests is None:
            built = [_test(compiler, sl, kind, path) for kind, path in discriminators]
            # A discriminator the slice does not define: the slice cannot be recognised.
            tests = [t for t in built if t is not None] if all(built) else []
            if not discriminators or not all(built):
                tests = [lambda item, frame: False]
        return all(t(item, frame) for t in tests)

    return match
