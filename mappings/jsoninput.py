"""JSON input read safely: size, encoding, syntax and depth problems become issues.

``read_json`` returns the document or None (with the reason in ``result.issues``); it never
raises. ``pointer`` writes RFC 6901 JSON pointers for issue locations.
"""

from __future__ import annotations

from typing import Any

import orjson

from mappings.contract import MappingOptions, MappingResult


def read_json(data: bytes, options: MappingOptions, result: MappingResult) -> Any | None:
    where = options.source
    if len(data) > options.max_bytes:
        result.error(
            "too-costly",
            f"{len(data):,} bytes is more than the {options.max_bytes:,} a feed may have",
            where,
        )
        return None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        result.error("invalid", f"not UTF-8 at byte {exc.start}: {exc.reason}", where)
        return None
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        line = text.count("\n", 0, exc.pos) + 1
        result.error("structure", f"not JSON: {exc.msg}", f"{where}:{line}")
        return None
    deepest = _too_deep(document, options.max_depth)
    if deepest is not None:
        result.error(
            "too-costly", f"nested deeper than {options.max_depth} levels", f"{where}#{deepest}"
        )
        return None
    return document


def read_object(
    data: bytes, options: MappingOptions, result: MappingResult, expected: str
) -> dict[str, Any] | None:
    """``read_json``'s document when it is a JSON object; anything else is reported as not
    being ``expected`` (the vendor's document named, e.g. "a Keldoc timetable")."""
    document = read_json(data, options, result)
    if document is None:
        return None
    if not isinstance(document, dict):
        result.error("structure", f"expected a JSON object ({expected})", options.source)
        return None
    return document


def _too_deep(document: Any, limit: int) -> str | None:
    """The pointer of a value nested deeper than ``limit``, or None (iterative: no
    recursion on hostile input). Only containers are walked, and a pointer is written only
    for the value found too deep (a feed has hundreds of thousands of values)."""
    Link = tuple[Any, str | int] | None  # (parent's link, key): the path, built on demand
    if limit < 1:
        return "/"
    stack: list[tuple[Any, int, Link]] = [(document, 1, None)]
    while stack:
        value, depth, link = stack.pop()
        if isinstance(value, dict):
            children: Any = value.items()
        elif isinstance(value, list):
            children = enumerate(value)
        else:
            continue
        for key, child in children:
            if depth + 1 > limit:
                return _path((link, key))
            if isinstance(child, dict | list):
                stack.append((child, depth + 1, (link, key)))
    return None


def _path(link: Any) -> str:
    keys: list[str | int] = []
    while link is not None:
        link, key = link
        keys.append(key)
    return pointer("", *reversed(keys)) or "/"


def pointer(base: str, *parts: str | int) -> str:
    """``base`` extended by ``parts``, escaped as RFC 6901 says (``~0``, ``~1``)."""
    out = base
    for part in parts:
        out += "/" + str(part).replace("~", "~0").replace("/", "~1")
    return out
