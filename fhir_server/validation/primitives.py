"""Primitive values: the JSON kind (string, number, boolean) and the R4 regex.

The regexes come from the R4 primitive type definitions (``StructureDefinition-date.json``,
element ``date.value``, extension ``regex``), compiled once per type. ``base64Binary`` is
checked without its regex, whose nested quantifiers backtrack badly on long bad input.
"""

from __future__ import annotations

import re
from typing import Any

from fhir_server.validation.packages import Conformance

_REGEX_EXT = "http://hl7.org/fhir/StructureDefinition/regex"
_INTEGERS = {"integer": (-(2**31), 2**31 - 1), "positiveInt": (1, 2**31 - 1)}
_INTEGERS["unsignedInt"] = (0, 2**31 - 1)
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_NO_REGEX = re.compile(r"(?s).*")


class Primitives:
    def __init__(self, conformance: Conformance) -> None:
        self.conformance = conformance
        self._regex: dict[str, re.Pattern[str]] = {}

    def regex(self, code: str) -> re.Pattern[str]:
        found = self._regex.get(code)
        if found is None:
            found = self._regex[code] = self._load(code)
        return found

    def _load(self, code: str) -> re.Pattern[str]:
        sd = self.conformance.core_type(code) or {}
        for element in (sd.get("snapshot") or {}).get("element") or ():
            if not isinstance(element, dict) or element.get("path") != f"{code}.value":
                continue
            for t in element.get("type") or ():
                for ext in t.get("extension") or () if isinstance(t, dict) else ():
                    if isinstance(ext, dict) and ext.get("url") == _REGEX_EXT:
                        try:
                            return re.compile(str(ext.get("valueString")))
                        except re.error:
                            return _NO_REGEX
        return _NO_REGEX

    def problem(self, code: str, value: Any) -> tuple[str, dict[str, Any]] | None:
        """(message key, arguments) when ``value`` is not a valid ``code``, else None."""
        if code == "boolean":
            if isinstance(value, bool):
                return None
            return "json-type", {"json": "boolean", "type": code, "found": _kind(value)}
        if code in _INTEGERS:
            if isinstance(value, bool) or not isinstance(value, int):
                return "json-type", {"json": "integer", "type": code, "found": _kind(value)}
            low, high = _INTEGERS[code]
            if not low <= value <= high:
                return "bad-format", {"type": code, "value": value}
            return None
        if code == "decimal":
            if isinstance(value, bool) or not isinstance(value, int | float):
                return "json-type", {"json": "number", "type": code, "found": _kind(value)}
            if value != value or value in (float("inf"), float("-inf")):
                return "bad-format", {"type": code, "value": value}
            return None
        if not isinstance(value, str):
            return "json-type", {"json": "string", "type": code, "found": _kind(value)}
        if value == "":
            return "bad-format", {"type": code, "value": '""'}
        if code == "base64Binary":
            ok = bool(_BASE64.fullmatch("".join(value.split())))
        elif code == "xhtml":
            ok = True
        else:
            ok = self.regex(code).fullmatch(value) is not None
        if ok:
            return None
        shown = value if len(value) <= 80 else value[:79] + "…"
        return "bad-format", {"type": code, "value": repr(shown)}


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"
