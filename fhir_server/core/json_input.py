"""JSON from clients: parsed once, its nesting bounded, no control characters in strings.

Validation, reference rewriting and the FHIRPath engine walk resources recursively, and
orjson refuses to serialise anything 255 levels deep: a body nested hundreds of levels deep
would end in a ``RecursionError`` or a failed write (a 500). No real resource comes close
(the deepest in the R4 core package, a CodeSystem, nests 19 levels; a Bundle adds 3), so
anything deeper than the limit is refused as a 400 before any of that code runs.

R4 strings hold no character below U+0020 but tab, CR and LF
(https://hl7.org/fhir/R4/datatypes.html#string), and PostgreSQL text cannot hold NUL: such
characters, which JSON can only carry escaped, are refused here, in keys and values alike.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from fhir_server.core import errors

MAX_DEPTH = 100
"""Default nesting limit (``FHIR_MAX_JSON_DEPTH``); the outermost object or array is level 1."""

# Where a string may carry a control character: \u0000-\u001f (tab, LF and CR are allowed:
# checked after the match), \b and \f. A match only counts after an even number of
# backslashes (``\\u0000`` is a backslash followed by "u0000").
_CONTROL_CANDIDATE = re.compile(rb"\\(?:u00[01]|[bf])")
_ALLOWED_AFTER_U000 = frozenset(b"9aAdD")
_BACKSLASH = ord("\\")

# orjson's own limit (1,024 levels) fails the parse itself; its message changed across versions.
_ORJSON_DEPTH_ERRORS = ("depth limit", "recursion limit")


def parse(raw: bytes, max_depth: int, what: str = "the body") -> Any:
    """``raw`` parsed; 400 ``structure`` if it is not JSON, ``value`` if a string holds a
    control character, ``too-costly`` if it nests deeper than ``max_depth``."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if any(m in str(exc).lower() for m in _ORJSON_DEPTH_ERRORS):
            raise too_deep(max_depth, what) from exc
        raise errors.incorrect(f"{what} is not valid JSON: {exc}", code="structure") from exc
    at = control_character_at(raw)
    if at is not None:
        escape = raw[at : at + 6 if raw[at + 1] == ord("u") else at + 2].decode()
        raise errors.incorrect(
            f"{what} holds the control character {escape} (byte {at}); FHIR strings hold "
            "none but tab, carriage return and line feed",
            code="value",
        )
    check_depth(value, max_depth, what)
    return value


def control_character_at(raw: bytes) -> int | None:
    """Offset of the first escape in valid JSON ``raw`` naming a control character FHIR
    forbids (JSON cannot carry them unescaped), else ``None``."""
    for match in _CONTROL_CANDIDATE.finditer(raw):
        start = before = match.start()
        while before and raw[before - 1] == _BACKSLASH:
            before -= 1
        if (start - before) % 2:
            continue  # an escaped backslash, then letters
        if match.group() == b"\\u000" and raw[start + 5] in _ALLOWED_AFTER_U000:
            continue
        return start
    return None


def check_depth(value: Any, max_depth: int, what: str = "the body") -> None:
    """400 ``too-costly`` when ``value`` nests deeper than ``max_depth`` levels."""
    if nests_deeper(value, max_depth):
        raise too_deep(max_depth, what)


def nests_deeper(value: Any, max_depth: int) -> bool:
    """Whether ``value`` has more than ``max_depth`` levels of objects and arrays.

    Level by level, without recursion: the point is not to recurse on hostile input.
    """
    level = [value] if type(value) in (dict, list) else []
    depth = 1
    while level:
        if depth > max_depth:
            return True
        inner: list[Any] = []
        for node in level:
            for child in node.values() if type(node) is dict else node:
                if type(child) is dict or type(child) is list:
                    inner.append(child)
        level = inner
        depth += 1
    return False


def too_deep(max_depth: int, what: str = "the body") -> errors.Incorrect:
    return errors.incorrect(
        f"{what} nests JSON objects and arrays more than {max_depth} levels deep, the limit "
        "of this server (FHIR_MAX_JSON_DEPTH)",
        code="too-costly",
    )
