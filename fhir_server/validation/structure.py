"""Structural checks of a resource's JSON against base R4.

One strict walk of the JSON against the element table generated from the R4
StructureDefinitions (``profiles/r4_elements.json``), collecting every issue (never only the
first):

- unknown elements (``_x`` primitive extensions only beside primitive elements), arrays
  where one value is allowed and the reverse, empty arrays, objects and strings, nulls;
- JSON primitive types (``"start": 12`` is not an instant, ``"active": "yes"`` is not a
  boolean), the R4 regexes of id, code, oid, date, dateTime, instant and time, real
  calendar dates, integer ranges (unsignedInt >= 0, positiveInt >= 1, 32 bits);
- required elements (``min >= 1``; a primitive may be replaced by its ``_x`` extension),
  the codes of ``code`` elements with a required binding (``Slot.status``), choice types
  with more than one ``[x]`` variant (or none when the choice is required);
- contained and Bundle entry resources, recursively.

The ``fhir.resources`` R4B model used to run after the walk for the required elements
and choice types; it cost twice the walk. It now runs only on nested resources of a type
the table does not describe (e.g. a contained Patient), where it is still the only check
(``model_issues``, kept as a function: ``tests/validation/test_structure_differential.py``
proves the walk reports an error whenever walk + model did).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from pydantic import ValidationError

import profiles
from fhir_server.core import fhirtime
from fhir_server.core.errors import Issue

_Check = Callable[[Any], str | None]
"""A primitive check: the problem with a JSON value (``None`` when it is fine)."""

_INT32 = (-(2**31), 2**31 - 1)
_INT_MIN = {"integer": _INT32[0], "unsignedInt": 0, "positiveInt": 1}
_PATTERNS = {
    "id": re.compile(r"[A-Za-z0-9\-.]{1,64}"),
    "code": re.compile(r"[^\s]+( [^\s]+)*"),
    "oid": re.compile(r"urn:oid:[0-2](\.(0|[1-9][0-9]*))+"),
    "time": re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?"),
    # The forms the R4 models parsed, minus the unhyphenated and braced ones.
    "uuid": re.compile(r"(urn:uuid:)?[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}"),
}


def _calendar(pattern: re.Pattern[str]) -> Callable[[str], bool]:
    """The R4 regex, then a real calendar date: ``fhirtime.is_date`` & co. without building
    the UTC range (the hot path of every Slot's start and end)."""

    def valid(v: str) -> bool:
        if pattern.fullmatch(v) is None:
            return False
        if len(v) < 10 or v[8:10] <= "28":
            return True
        try:
            datetime.date(int(v[:4]), int(v[5:7]), int(v[8:10]))
        except ValueError:  # 2024-02-30
            return False
        return True

    return valid


_DATES: dict[str, Callable[[str], bool]] = {
    "date": _calendar(fhirtime.DATE_RE),
    "dateTime": _calendar(fhirtime.DATETIME_RE),
    "instant": _calendar(fhirtime.INSTANT_RE),
}
_FORMAT_HINT = {
    "date": "YYYY, YYYY-MM or YYYY-MM-DD",
    "dateTime": "YYYY-MM-DDThh:mm:ss+zz:zz (a time requires a time zone)",
    "instant": "YYYY-MM-DDThh:mm:ss.sss+zz:zz (time zone required)",
    "time": "hh:mm:ss",
}
_MAX_LISTED_CODES = 12


def _primitive_check(ftype: str) -> _Check:
    """The check of one primitive FHIR type, built once per type."""
    if ftype == "boolean":

        def boolean(v: Any) -> str | None:
            return None if v is True or v is False else f"expected a JSON boolean, got {_kind(v)}"

        return boolean
    if ftype == "decimal":

        def decimal(v: Any) -> str | None:
            if isinstance(v, bool) or not isinstance(v, int | float):
                return "expected a JSON number (decimal)"
            return None if isinstance(v, int) or math.isfinite(v) else "not a finite number"

        return decimal
    if ftype in _INT_MIN:
        low = _INT_MIN[ftype]

        def integer(v: Any) -> str | None:
            if isinstance(v, bool) or not isinstance(v, int | float):
                return f"expected a JSON number ({ftype})"
            if not isinstance(v, int):
                return f"expected an integer ({ftype})"
            if not low <= v <= _INT32[1]:
                return f"{v} is out of range for {ftype} ({low}..{_INT32[1]})"
            return None

        return integer
    pattern = _PATTERNS.get(ftype)
    valid = _DATES.get(ftype) or (_is_base64 if ftype == "base64Binary" else None)
    hint = _FORMAT_HINT.get(ftype, "")
    blank_ok = ftype == "xhtml"

    def string(v: Any) -> str | None:
        if not isinstance(v, str):
            return f"expected a JSON string ({ftype}), got {_kind(v)}"
        if v == "" or (not blank_ok and v.isspace()):
            return "empty strings are not allowed"
        if (pattern is not None and pattern.fullmatch(v) is None) or (
            valid is not None and not valid(v)
        ):
            return f"invalid {ftype} {v!r}" + (f": expected {hint}" if hint else "")
        return None

    return string


def _is_base64(value: str) -> bool:
    """What the models accepted: ``base64.b64decode`` (it skips non-alphabet characters)."""
    try:
        base64.b64decode(value.encode("utf-8"))
    except (binascii.Error, ValueError):
        return False
    return True


def _kind(v: Any) -> str:
    return type(v).__name__


# Kinds of element value.
_PRIMITIVE, _RESOURCE, _BACKBONE, _COMPLEX = range(4)


@dataclass(slots=True)
class _Field:
    """What a JSON key of an object holds (choice keys such as ``valueString`` included)."""

    element: str  # the element name (``value[x]`` for a choice key)
    path: str  # the element's path in its type, for messages (``Slot.status``)
    many: bool
    kind: int
    ftype: str
    check: _Check | None = None
    codes: frozenset[str] | None = None
    node: tuple[str, str] = ("", "")  # the type and prefix of an object's children
    extensible: bool = False  # may have a ``_key`` sibling (primitives only)


@dataclass(slots=True)
class _Node:
    """The children of one object: a datatype (prefix ``""``) or a backbone element."""

    fields: dict[str, _Field] = field(default_factory=dict)
    # (element name, JSON keys that satisfy it, extension key or "") for min >= 1
    required: list[tuple[str, tuple[str, ...], str]] = field(default_factory=list)
    choices: bool = False


@cache
def _tables() -> tuple[dict[str, dict[str, Any]], frozenset[str], frozenset[str]]:
    data = profiles.r4_elements()
    return data["types"], frozenset(data["primitives"]), frozenset(data["resources"])


@cache
def _check_for(ftype: str) -> _Check:
    return _primitive_check(ftype)


@cache
def _node(type_name: str, prefix: str) -> _Node:
    """Compile the direct children of ``prefix`` inside ``type_name`` (once)."""
    types, primitives, resources = _tables()
    depth = prefix.count(".") + 1 if prefix else 0
    node = _Node()
    for path, info in types.get(type_name, {}).items():
        if (prefix and not path.startswith(prefix + ".")) or path.count(".") != depth:
            continue
        name = path.rsplit(".", 1)[-1]
        many = info["max"] != "1"
        label = f"{type_name}.{path}"
        if "ref" in info:  # contentReference: same shape as another backbone element
            node.fields[name] = _Field(
                name, label, many, _BACKBONE, "BackboneElement", node=(type_name, info["ref"])
            )
            keys: tuple[str, ...] = (name,)
        else:
            keys = ()
            for ftype in info["types"]:
                key = name[:-3] + ftype[:1].upper() + ftype[1:] if name.endswith("[x]") else name
                keys += (key,)
                if ftype in primitives or ftype in ("string", "uri"):
                    is_id = name == "id" and not prefix and type_name in resources
                    check = _check_for("id" if is_id else ftype)
                    codes = frozenset(info["codes"]) if "codes" in info else None
                    node.fields[key] = _Field(
                        name,
                        label,
                        many,
                        _PRIMITIVE,
                        ftype,
                        check,
                        codes,
                        extensible=_extensible(type_name, prefix, name),
                    )
                elif ftype == "Resource":
                    node.fields[key] = _Field(name, label, many, _RESOURCE, ftype)
                elif ftype in ("BackboneElement", "Element"):
                    node.fields[key] = _Field(
                        name, label, many, _BACKBONE, ftype, node=(type_name, path)
                    )
                else:
                    node.fields[key] = _Field(name, label, many, _COMPLEX, ftype, node=(ftype, ""))
            node.choices = node.choices or name.endswith("[x]")
        if info.get("min", 0) >= 1:
            primitive = all(node.fields[k].kind == _PRIMITIVE for k in keys)
            ext = "_" + name if primitive and not name.endswith("[x]") else ""
            node.required.append((name, keys, ext))
    return node


def _extensible(type_name: str, prefix: str, name: str) -> bool:
    """Ids (System.String in R4), ``Extension.url`` and ``Extension.value[x]`` take no
    ``_key`` sibling: the R4 models have none, so they rejected one."""
    return name != "id" and not (type_name == "Extension" and not prefix and name != "extension")


@cache
def _extension_node() -> _Node:
    """``_x`` siblings of primitives hold an Element: ``id`` and ``extension``."""
    base = _node("Extension", "")
    return _Node(fields={k: base.fields[k] for k in ("id", "extension")})


class _Walker:
    def __init__(self) -> None:
        self.issues: list[Issue] = []

    def error(self, where: str, message: str, code: str = "structure") -> None:
        self.issues.append(Issue(code, message, expression=(where,)))

    def resource(self, data: Any, where: str) -> None:
        if not isinstance(data, dict):
            self.error(where, "a resource must be a JSON object")
            return
        rtype = data.get("resourceType")
        if not isinstance(rtype, str):
            self.error(where, "resourceType is missing")
            return
        _, _, resources = _tables()
        if rtype in resources:
            self.object(data, _node(rtype, ""), where, rtype, is_resource=True)
        else:  # a type the table does not describe (e.g. a contained Patient)
            for issue in model_issues(data):
                expression = tuple(where + e.removeprefix(rtype) for e in issue.expression)
                self.issues.append(Issue(issue.code, issue.diagnostics, expression=expression))

    def object(
        self, data: dict[str, Any], node: _Node, where: str, owner: str, is_resource: bool = False
    ) -> None:
        fields = node.fields
        for key, value in data.items():
            f = fields.get(key)
            if f is not None:
                if f.many:
                    if type(value) is not list:
                        self.error(f"{where}.{key}", f"'{key}' must be an array")
                        continue
                    if not value:
                        self.error(f"{where}.{key}", f"'{key}' must not be an empty array")
                    # FHIR JSON: in an array of primitives, null holds the place of a value
                    # whose extension (same index in "_key") stands for it
                    stand_ins = data.get(f"_{key}") if f.kind == _PRIMITIVE else None
                    for index, item in enumerate(value):
                        if item is None and _has_extension_at(stand_ins, index):
                            continue
                        self.value(item, f, f"{where}.{key}[{index}]")
                elif type(value) is list:
                    self.error(f"{where}.{key}", f"'{key}' must be a single value, not an array")
                else:
                    self.value(value, f, f"{where}.{key}")
            elif key.startswith("_"):
                self.extension(value, fields.get(key[1:]), f"{where}.{key}", key)
            elif key == "fhir_comments":
                if not (isinstance(value, str) or _strings(value)):
                    self.error(f"{where}.{key}", "fhir_comments must be a string or strings")
            elif not (is_resource and key == "resourceType"):
                self.error(f"{where}.{key}", f"unknown element '{key}' in {owner}")
        if node.required:
            self.required(data, node, where)
        if node.choices:
            self.choices(data, node, where)

    def required(self, data: dict[str, Any], node: _Node, where: str) -> None:
        for name, keys, ext in node.required:
            if any(data.get(k) is not None for k in keys):
                continue
            extension = data.get(ext) if ext else None
            if isinstance(extension, dict) and extension.get("extension"):
                continue  # a primitive's value may be replaced by an extension
            label = node.fields[keys[0]].path
            self.error(f"{where}.{name.removesuffix('[x]')}", f"{label} is required", "required")

    def choices(self, data: dict[str, Any], node: _Node, where: str) -> None:
        seen: dict[str, list[str]] = {}
        for key in data:
            f = node.fields.get(key)
            if f is not None and f.element.endswith("[x]"):
                seen.setdefault(f.element, []).append(key)
        for name, keys in seen.items():
            if len(keys) > 1:
                self.error(
                    f"{where}.{name[:-3]}", f"only one of {', '.join(keys)} may be present ({name})"
                )

    def value(self, item: Any, f: _Field, at: str) -> None:
        if item is None:
            self.error(at, "null is not allowed", "value")
            return
        kind = f.kind
        if kind == _PRIMITIVE:
            problem = f.check(item) if f.check is not None else None
            if problem is not None:
                self.error(at, problem, "value")
            elif f.codes is not None and item not in f.codes:
                self.error(at, _code_message(item, f), "code-invalid")
        elif kind == _RESOURCE:
            self.resource(item, at)
        elif type(item) is not dict:
            self.error(at, f"expected a JSON object ({f.ftype})")
        elif kind == _BACKBONE:
            owner, path = f.node
            self.object(item, _node(owner, path), at, owner)
        elif not item:
            self.error(at, "empty objects are not allowed")
        else:
            self.object(item, _node(f.ftype, ""), at, f.ftype)

    def extension(self, value: Any, f: _Field | None, at: str, key: str) -> None:
        """``{"_start": {"extension": [...]}}``: only beside a primitive element."""
        if f is None or not f.extensible:
            self.error(at, f"unknown element '{key}'")
            return
        items: list[Any]
        if f.many:
            if type(value) is not list:
                self.error(at, f"'{key}' must be an array")
                return
            items = value
        elif type(value) is list:
            self.error(at, f"'{key}' must be a single value, not an array")
            return
        else:
            items = [value]
        for index, item in enumerate(items):
            where = f"{at}[{index}]" if f.many else at
            if item is None and f.many:
                continue  # positional placeholder lining up with the value array
            if type(item) is not dict:
                self.error(where, "expected a JSON object (Element)")
            elif not item:
                self.error(where, "empty objects are not allowed")
            else:
                self.object(item, _extension_node(), where, "Element")


def _has_extension_at(stand_ins: Any, index: int) -> bool:
    return (
        type(stand_ins) is list
        and index < len(stand_ins)
        and type(stand_ins[index]) is dict
        and bool(stand_ins[index].get("extension"))
    )


def _strings(value: Any) -> bool:
    return type(value) is list and all(isinstance(v, str) for v in value)


def _code_message(item: str, f: _Field) -> str:
    codes = sorted(f.codes or ())
    listed = ", ".join(codes[:_MAX_LISTED_CODES]) + (
        ", ..." if len(codes) > _MAX_LISTED_CODES else ""
    )
    return f"{item!r} is not a valid code for {f.path} (required binding): expected {listed}"


def json_issues(resource: dict[str, Any]) -> list[Issue]:
    """Every problem the walk finds (see the module docstring)."""
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
    """The ``fhir.resources`` R4B model's verdict (for types the table does not describe)."""
    from fhir.resources.R4B import get_fhir_model_class  # heavy import, done once lazily

    rtype = str(resource.get("resourceType"))
    try:
        model = get_fhir_model_class(rtype)
    except (KeyError, ValueError):
        model = None
    if model is None or not model.has_resource_base():  # e.g. "Period" is a datatype
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
    except (KeyError, ValueError, TypeError) as exc:  # e.g. an unknown contained type
        return [Issue("structure", f"invalid resource: {exc}", expression=(rtype,))]
    return []


def structure_issues(resource: dict[str, Any]) -> list[Issue]:
    """Every structural problem of the resource; empty when it is valid base R4 JSON."""
    return json_issues(resource)
