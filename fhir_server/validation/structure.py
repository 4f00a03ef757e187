"""Structural checks of a resource's JSON against base R4.

Two passes, both collecting every issue (never only the first):

1. a strict walk of the JSON against the element table generated from the R4
   StructureDefinitions (``profiles/r4_elements.json``): unknown elements, arrays where one
   value is allowed and the reverse, and JSON primitive types (``"start": 12`` is not an
   instant, ``"active": "yes"`` is not a boolean) plus the R4 regexes of date, dateTime and
   instant. The ``fhir.resources`` models coerce such values silently, so this pass exists.
2. the ``fhir.resources`` R4B model (required elements, enumerations, nested resources).
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from pydantic import ValidationError

import profiles
from fhir_server.core import fhirtime
from fhir_server.core.errors import Issue

_NUMBER_TYPES = {"decimal", "integer", "positiveInt", "unsignedInt", "integer64"}
_STRING_CHECKS: dict[str, Any] = {
    "date": fhirtime.is_date,
    "dateTime": fhirtime.is_datetime,
    "instant": fhirtime.is_instant,
    "time": lambda v: bool(fhirtime.TIME_RE.match(v)),
    "id": lambda v: bool(re.match(r"^[A-Za-z0-9\-.]{1,64}$", v)),
    "code": lambda v: bool(re.match(r"^[^\s]+( [^\s]+)*$", v)),
}
_FORMAT_HINT = {
    "date": "YYYY, YYYY-MM or YYYY-MM-DD",
    "dateTime": "YYYY-MM-DDThh:mm:ss+zz:zz (a time requires a time zone)",
    "instant": "YYYY-MM-DDThh:mm:ss.sss+zz:zz (time zone required)",
}


@cache
def _tables() -> tuple[dict[str, dict[str, Any]], frozenset[str]]:
    data = profiles.r4_elements()
    return data["types"], frozenset(data["primitives"])


def _children(type_name: str, prefix: str) -> dict[str, dict[str, Any]]:
    """Direct children of ``prefix`` inside ``type_name`` (``""`` for the root)."""
    return _children_cached(type_name, prefix)


@cache
def _children_cached(type_name: str, prefix: str) -> dict[str, dict[str, Any]]:
    types, _ = _tables()
    table = types.get(type_name, {})
    depth = prefix.count(".") + 1 if prefix else 0
    out: dict[str, dict[str, Any]] = {}
    for path, info in table.items():
        if prefix and not path.startswith(prefix + "."):
            continue
        if path.count(".") != depth:
            continue
        name = path.rsplit(".", 1)[-1]
        if "ref" in info:  # contentReference: same shape as another backbone element
            info = {**info, "types": ["BackboneElement"], "backbone": info["ref"]}
        out[name] = {**info, "path": path}
    return out


def _resolve_choice(
    children: dict[str, dict[str, Any]], key: str
) -> tuple[dict[str, Any], str] | None:
    """Map a JSON key to its element; choice keys ``valueString`` resolve ``value[x]``."""
    if key in children:
        info = children[key]
        return info, info["types"][0] if len(info["types"]) == 1 else ""
    for name, info in children.items():
        if name.endswith("[x]") and key.startswith(name[:-3]):
            suffix = key[len(name) - 3 :]
            for t in info["types"]:
                if t[:1].upper() + t[1:] == suffix:
                    return info, t
    return None


class _Walker:
    def __init__(self) -> None:
        self.issues: list[Issue] = []

    def error(self, where: str, message: str, code: str = "structure") -> None:
        self.issues.append(Issue(code, message, expression=(where,)))

    def resource(self, data: Any, where: str) -> None:
        types, _ = _tables()
        if not isinstance(data, dict):
            self.error(where, "a resource must be a JSON object")
            return
        rtype = data.get("resourceType")
        if not isinstance(rtype, str):
            self.error(where, "resourceType is missing")
            return
        if rtype not in types:
            return  # a type we do not serve (e.g. contained Patient): left to the model
        self.object(data, rtype, "", where, is_resource=True)

    def object(
        self,
        data: dict[str, Any],
        type_name: str,
        prefix: str,
        where: str,
        is_resource: bool = False,
    ) -> None:
        children = _children(type_name, prefix)
        for key, value in data.items():
            if is_resource and key == "resourceType":
                continue
            if key == "fhir_comments":
                continue
            if key.startswith("_"):
                # Primitive extensions: {"_start": {"extension": [...]}}.
                if _resolve_choice(children, key[1:]) is None:
                    self.error(f"{where}.{key}", f"unknown element '{key}'")
                continue
            resolved = _resolve_choice(children, key)
            if resolved is None:
                self.error(f"{where}.{key}", f"unknown element '{key}' in {type_name}")
                continue
            info, ftype = resolved
            self.element(value, info, ftype, type_name, f"{where}.{key}", key)

    def element(
        self, value: Any, info: dict[str, Any], ftype: str, owner: str, where: str, key: str
    ) -> None:
        many = info["max"] != "1"
        if many:
            if not isinstance(value, list):
                self.error(where, f"'{key}' must be an array")
                return
            if not value:
                self.error(where, f"'{key}' must not be an empty array")
            items: list[tuple[int | None, Any]] = list(enumerate(value))
        else:
            if isinstance(value, list):
                self.error(where, f"'{key}' must be a single value, not an array")
                return
            items = [(None, value)]
        for index, item in items:
            at = where if index is None else f"{where}[{index}]"
            self.value(item, info, ftype, owner, at)

    def value(self, item: Any, info: dict[str, Any], ftype: str, owner: str, at: str) -> None:
        _, primitives = _tables()
        if item is None:
            self.error(at, "null is not allowed", "value")
            return
        if ftype in primitives or ftype in ("string", "uri"):
            self.primitive(item, ftype, at)
        elif ftype == "Resource":
            self.resource(item, at)
        elif ftype in ("BackboneElement", "Element") and owner:
            if not isinstance(item, dict):
                self.error(at, "expected a JSON object")
                return
            self.object(item, owner, info.get("backbone", info["path"]), at)
        elif ftype:
            if not isinstance(item, dict):
                self.error(at, f"expected a JSON object ({ftype})")
                return
            if not item:
                self.error(at, "empty objects are not allowed")
                return
            self.object(item, ftype, "", at)

    def primitive(self, item: Any, ftype: str, at: str) -> None:
        if ftype == "boolean":
            if not isinstance(item, bool):
                self.error(at, f"expected a JSON boolean, got {type(item).__name__}", "value")
            return
        if ftype in _NUMBER_TYPES:
            if isinstance(item, bool) or not isinstance(item, int | float):
                self.error(at, f"expected a JSON number ({ftype})", "value")
            elif ftype != "decimal" and not isinstance(item, int):
                self.error(at, f"expected an integer ({ftype})", "value")
            return
        if not isinstance(item, str):
            self.error(at, f"expected a JSON string ({ftype}), got {type(item).__name__}", "value")
            return
        if item == "" or (item.strip() == "" and ftype != "xhtml"):
            self.error(at, "empty strings are not allowed", "value")
            return
        check = _STRING_CHECKS.get(ftype)
        if check is not None and not check(item):
            hint = _FORMAT_HINT.get(ftype, "")
            self.error(
                at, f"invalid {ftype} {item!r}" + (f": expected {hint}" if hint else ""), "value"
            )


def json_issues(resource: dict[str, Any]) -> list[Issue]:
    walker = _Walker()
    walker.resource(resource, str(resource.get("resourceType", "Resource")))
    return walker.issues


def _loc_to_expression(root: str, loc: tuple[Any, ...]) -> str:
    out = root
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}"
    return out


def model_issues(resource: dict[str, Any]) -> list[Issue]:
    from fhir.resources.R4B import get_fhir_model_class  # heavy import, done once lazily

    rtype = str(resource.get("resourceType"))
    try:
        model = get_fhir_model_class(rtype)
    except KeyError:
        return [Issue("not-supported", f"unknown resource type {rtype!r}", expression=(rtype,))]
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        return [
            Issue(
                "required"
                if err["type"] == "missing" or "is required" in str(err["msg"])
                else "structure",
                str(err["msg"]).removeprefix("Value error, "),
                expression=(_loc_to_expression(rtype, tuple(err["loc"])),),
            )
            for err in exc.errors()
        ]
    return []


def structure_issues(resource: dict[str, Any]) -> list[Issue]:
    """Every structural problem of the resource; empty when it is valid base R4 JSON."""
    issues = json_issues(resource)
    if issues:
        return issues  # the model would repeat the same problems less precisely
    return model_issues(resource)
