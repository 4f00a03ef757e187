"""Query string -> typed search AST (pure: no SQL, no I/O). https://hl7.org/fhir/R4/search.html

``parse`` takes the (already URL-decoded) query pairs of a type-level search and returns a
``Query``: one ``Criterion`` per search parameter occurrence (occurrences are ANDed), each
with its OR-ed values typed by the parameter's type, plus the result controls (``_count``,
``_sort``, ``_include``...). Names the registry does not know go to ``Query.unknown``: the
caller ignores and reports them, or refuses them under ``Prefer: handling=strict``.
Malformed values raise ``errors.incorrect`` (400) naming the parameter.

Chained names (``schedule.actor:Practitioner.identifier``) and reverse chains
(``_has:Slot:schedule:status``) are resolved by ``chain``: the criterion keeps the reference
path and the final parameter types its values. ``near`` (Location) takes
``latitude|longitude|distance|unit``.

Escaping follows the spec: ``\\,`` ``\\|`` ``\\$`` ``\\\\`` stand for the character itself.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal, localcontext
from zoneinfo import ZoneInfo

from fhir_server.core import errors, fhirtime
from fhir_server.search.query import chain
from fhir_server.search.query.chain import Link
from fhir_server.search.registry.parameters import CONTROL_PARAMETERS, Registry, SearchParameter

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")

# R4 modifiers by parameter type; a resource type name (":Practitioner") is also allowed on
# references. Those in _NOT_SUPPORTED are valid FHIR but need terminology or identifiers in
# references, which this server does not index yet.
_MODIFIERS: dict[str, frozenset[str]] = {
    "string": frozenset({"exact", "contains", "missing"}),
    "token": frozenset({"text", "not", "of-type", "missing", "in", "not-in", "above", "below"}),
    "reference": frozenset({"missing", "identifier", "above", "below"}),
    "date": frozenset({"missing"}),
    "number": frozenset({"missing"}),
    "quantity": frozenset({"missing"}),
    "uri": frozenset({"above", "below", "missing"}),
    "special": frozenset({"missing"}),  # only ``near`` (Location.position) is indexed
}
_NOT_SUPPORTED = {
    ("token", "in"),
    ("token", "not-in"),
    ("token", "above"),
    ("token", "below"),
    ("reference", "identifier"),
    ("reference", "above"),
    ("reference", "below"),
}
_SPECIAL_MODIFIERS = {"_id": frozenset({"not"}), "_lastUpdated": frozenset[str]()}
_GEO_EXPRESSION = "Location.position"  # the one "special" parameter with an index: near
DEFAULT_NEAR_KM = 10.0  # ``near=lat|lon`` without a distance
MAX_NEAR_KM = 20_016.0  # half a great circle (pi R): a longer distance is cut to this
_DISTANCE_UNITS = {"km": 1.0, "m": 0.001, "mi": 1.609344, "[mi_i]": 1.609344}
SORTABLE_TYPES = frozenset({"string", "token", "date", "number", "quantity", "uri"})
_SUMMARY = frozenset({"true", "false", "text", "data", "count"})
_TOTAL = frozenset({"none", "estimate", "accurate"})
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,4})?\Z")
_RESOURCE_TYPE = re.compile(r"^[A-Z][A-Za-z]+$")
# "+02:00" decoded as " 02:00" by a form decoder that treats "+" as a space.
_SPACE_OFFSET = re.compile(r"^(.*T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}:\d{2})$")


# -- typed values -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TokenValue:
    """``system|code``. ``system`` None = any system, "" = no system (``|code``);
    ``code`` None = any code in the system (``system|``)."""

    system: str | None
    code: str | None


@dataclass(frozen=True, slots=True)
class OfTypeValue:
    """``identifier:of-type=type-system|type-code|value``."""

    type_system: str
    type_code: str
    value: str


@dataclass(frozen=True, slots=True)
class TextValue:
    """``:text``: matched against the display/text stored with a token."""

    text: str


@dataclass(frozen=True, slots=True)
class StringValue:
    text: str


@dataclass(frozen=True, slots=True)
class DateValue:
    """A prefixed date; ``[low, high)`` is the UTC range the value stands for."""

    prefix: str
    low: datetime
    high: datetime


@dataclass(frozen=True, slots=True)
class NumberValue:
    """A prefixed number; ``[low, high)`` is its implicit precision (100 -> [99.5, 100.5))."""

    prefix: str
    value: Decimal
    low: Decimal
    high: Decimal


@dataclass(frozen=True, slots=True)
class QuantityValue:
    number: NumberValue
    system: str | None  # None: any system
    code: str | None  # None: any unit


@dataclass(frozen=True, slots=True)
class ReferenceValue:
    """``Type/id`` (type None when only an id was given), or an absolute ``url``."""

    res_type: str | None = None
    res_id: str | None = None
    url: str | None = None


@dataclass(frozen=True, slots=True)
class UriValue:
    uri: str


@dataclass(frozen=True, slots=True)
class MissingValue:
    missing: bool


@dataclass(frozen=True, slots=True)
class NearValue:
    """``near``: within ``distance_km`` (great circle) of a WGS84 point, in degrees."""

    latitude: float
    longitude: float
    distance_km: float


SearchValue = (
    TokenValue
    | OfTypeValue
    | TextValue
    | StringValue
    | DateValue
    | NumberValue
    | QuantityValue
    | ReferenceValue
    | UriValue
    | MissingValue
    | NearValue
)


@dataclass(frozen=True, slots=True)
class Criterion:
    """One occurrence of a search parameter: matches when any of ``values`` matches.

    ``modifier`` is the text after ``:`` (``exact``, ``missing``, ``not``, ``of-type``,
    or a resource type for references); ``raw`` is the value as received, for messages.
    A chained name has a ``path``: the criterion is about the resources (of ``res_types``)
    that the path leads to, not about the searched resources themselves.
    """

    name: str
    param: SearchParameter
    modifier: str | None
    values: tuple[SearchValue, ...]
    raw: str
    path: tuple[Link, ...] = ()
    res_types: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SortKey:
    param: SearchParameter
    descending: bool = False


@dataclass(frozen=True, slots=True)
class Include:
    """``_include`` / ``_revinclude`` as received (resolved by the include step later)."""

    value: str
    reverse: bool = False
    iterate: bool = False


@dataclass
class Query:
    res_type: str
    criteria: list[Criterion] = field(default_factory=list)
    count: int | None = None
    offset: int = 0
    sort: list[SortKey] = field(default_factory=list)
    include: list[Include] = field(default_factory=list)
    summary: str | None = None
    total: str | None = None
    elements: list[str] = field(default_factory=list)
    controls: dict[str, str] = field(default_factory=dict)  # _format, _pretty, _cursor...
    unknown: list[str] = field(default_factory=list)


# -- entry point --------------------------------------------------------------------------


_CONTROL_CHARACTER = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")


def parse(
    registry: Registry,
    res_type: str,
    pairs: Sequence[tuple[str, str]],
    *,
    default_tz: ZoneInfo,
) -> Query:
    """The typed query for a search on ``res_type``. Raises ``errors.incorrect`` on bad input."""
    query = Query(res_type)
    for name, value in pairs:
        if _CONTROL_CHARACTER.search(name) or _CONTROL_CHARACTER.search(value):
            # R4 strings hold none, and PostgreSQL text cannot hold a NUL (a 500 otherwise)
            raise errors.incorrect(
                f"search parameter {name!r}: control characters are not allowed",
                code="value",
                expression=[_CONTROL_CHARACTER.sub("?", name)],
            )
        if chain.is_chained(name):
            path = chain.resolve(registry, res_type, name)
            found = _criterion(name, path.param, path.modifier, value, default_tz)
            if found is not None:
                query.criteria.append(replace(found, path=path.links, res_types=path.res_types))
            continue
        base, colon, modifier = name.partition(":")
        if base in CONTROL_PARAMETERS:
            _control(registry, query, base, modifier, value)
            continue
        param = registry.get(res_type, base)
        if param is None:
            query.unknown.append(name)
            continue
        if colon and not modifier:
            raise _bad(name, "':' must be followed by a modifier")
        criterion = _criterion(name, param, modifier or None, value, default_tz)
        if criterion is not None:
            query.criteria.append(replace(criterion, res_types=(res_type,)))
    return query


def _bad(name: str, message: str, code: str = "invalid") -> errors.FhirError:
    error: errors.FhirError = errors.incorrect(
        f"search parameter {name!r}: {message}", code=code, expression=[name]
    )
    return error


def _criterion(
    name: str, param: SearchParameter, modifier: str | None, value: str, default_tz: ZoneInfo
) -> Criterion | None:
    _check_modifier(name, param, modifier)
    if modifier == "missing":
        if value not in ("true", "false"):
            raise _bad(name, f":missing takes true or false, not {value!r}")
        return Criterion(name, param, modifier, (MissingValue(value == "true"),), value)
    pieces = split_values(value)
    if not pieces:
        return None  # an empty parameter is ignored
    values = tuple(_value(name, param, modifier, p, default_tz) for p in pieces)
    return Criterion(name, param, modifier, values, value)


def _check_modifier(name: str, param: SearchParameter, modifier: str | None) -> None:
    if param.code in _SPECIAL_MODIFIERS:
        if modifier is not None and modifier not in _SPECIAL_MODIFIERS[param.code]:
            raise _bad(name, f"modifier :{modifier} is not allowed on {param.code}")
        return
    supported = param.type in _MODIFIERS and (
        param.type != "special" or param.expression == _GEO_EXPRESSION
    )
    if not param.expression or not supported:
        raise _bad(name, f"{param.type} parameter not supported", code="not-supported")
    if modifier is None:
        return
    if param.type == "reference" and _RESOURCE_TYPE.match(modifier):
        if param.target and modifier not in param.target:
            raise _bad(name, f"{modifier} is not a target type ({', '.join(param.target)})")
        return
    if modifier not in _MODIFIERS[param.type]:
        raise _bad(name, f"unknown modifier :{modifier} for a {param.type} parameter")
    if (param.type, modifier) in _NOT_SUPPORTED:
        raise _bad(name, f"modifier :{modifier} is not supported yet", code="not-supported")


def _value(
    name: str, param: SearchParameter, modifier: str | None, piece: str, default_tz: ZoneInfo
) -> SearchValue:
    if param.code == "_id":
        return TokenValue(None, unescape(piece))
    kind = param.type
    if kind == "token":
        if modifier == "text":
            return TextValue(unescape(piece))
        if modifier == "of-type":
            parts = split_escaped(piece, "|")
            if len(parts) != 3 or not all(parts):
                raise _bad(name, "of-type takes type-system|type-code|value")
            return OfTypeValue(*(unescape(p) for p in parts))
        return parse_token(name, piece)
    if kind == "string":
        return StringValue(unescape(piece))
    if kind == "date":
        return parse_date(name, param, piece, default_tz)
    if kind == "number":
        return parse_number(name, param, piece)
    if kind == "quantity":
        parts = split_escaped(piece, "|")
        if len(parts) not in (1, 3):
            raise _bad(name, f"a quantity is number or number|system|code, not {piece!r}")
        number = parse_number(name, param, parts[0])
        system, code = (unescape(p) or None for p in parts[1:]) if len(parts) == 3 else (None, None)
        return QuantityValue(number, system, code)
    if kind == "reference":
        return parse_reference(name, modifier, unescape(piece))
    if kind == "special":
        return parse_near(name, piece)
    return UriValue(unescape(piece))


# -- value syntax -------------------------------------------------------------------------


def split_escaped(text: str, sep: str) -> list[str]:
    """Split on ``sep`` unless escaped; escapes are kept (``unescape`` removes them)."""
    if "\\" not in text:
        return text.split(sep)
    parts, current, i = [], [], 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            current.append(text[i : i + 2])
            i += 2
            continue
        if char == sep:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    parts.append("".join(current))
    return parts


def unescape(text: str) -> str:
    return re.sub(r"\\([\\,|$])", r"\1", text)


def escape(text: str) -> str:
    """The inverse of ``unescape``: what a client writes for a literal value."""
    return re.sub(r"([\\,|$])", r"\\\1", text)


def split_values(value: str) -> list[str]:
    """Comma-separated OR values; spaces after a comma are dropped, empty values too."""
    pieces = split_escaped(value, ",")
    out = [pieces[0], *(p.lstrip(" ") for p in pieces[1:])]
    return [p for p in out if p]


def parse_token(name: str, piece: str) -> TokenValue:
    parts = split_escaped(piece, "|")
    if len(parts) == 1:
        return TokenValue(None, unescape(piece))
    system, code = unescape(parts[0]), unescape("|".join(parts[1:]))
    if not system and not code:
        raise _bad(name, "a token needs a system or a code")
    return TokenValue(system, code or None)


def _prefix(name: str, param: SearchParameter, piece: str) -> tuple[str, str]:
    head = piece[:2]
    if len(piece) > 2 and head.isascii() and head.isalpha():
        if head not in PREFIXES:
            raise _bad(name, f"unknown prefix {head!r} (use one of {', '.join(PREFIXES)})")
        if param.comparator and head != "eq" and head not in param.comparator:
            raise _bad(name, f"prefix {head!r} is not allowed on this parameter")
        return head, piece[2:]
    return "eq", piece


def parse_date(name: str, param: SearchParameter, piece: str, default_tz: ZoneInfo) -> DateValue:
    prefix, text = _prefix(name, param, piece)
    text = _SPACE_OFFSET.sub(r"\1+\2", text.strip(" "))
    try:
        low, high = fhirtime.parse_range(text, default_tz)
    except fhirtime.DateValueError:
        raise _bad(name, f"{piece!r} is not a date, dateTime or instant") from None
    return DateValue(prefix, low, high)


def parse_number(name: str, param: SearchParameter, piece: str) -> NumberValue:
    prefix, text = _prefix(name, param, piece)
    text = text.strip(" ")
    if not _NUMBER.match(text):
        raise _bad(name, f"{piece!r} is not a number")
    number = Decimal(text)
    exponent = number.as_tuple().exponent
    if not isinstance(exponent, int) or abs(exponent) > 1000:
        raise _bad(name, f"{piece!r} is out of range")
    half = Decimal(5).scaleb(exponent - 1)  # half a unit of the last digit given
    with localcontext() as exact:
        exact.prec = len(number.as_tuple().digits) + 2
        return NumberValue(prefix, number, number - half, number + half)


def parse_reference(name: str, modifier: str | None, text: str) -> ReferenceValue:
    if "://" in text or text.startswith(("urn:", "#")):
        return ReferenceValue(url=text)
    text = text.split("/_history/")[0]
    res_type, _, res_id = text.rpartition("/")
    if not res_type:
        return ReferenceValue(res_type=modifier, res_id=res_id)
    res_type = res_type.rsplit("/", 1)[-1]
    if not _RESOURCE_TYPE.match(res_type) or not res_id:
        raise _bad(name, f"{text!r} is not a reference (Type/id, id or an absolute URL)")
    if modifier is not None and modifier != res_type:
        raise _bad(name, f"{text!r} is not a {modifier}")
    return ReferenceValue(res_type=res_type, res_id=res_id)


def _float(name: str, text: str, what: str, low: float, high: float) -> float:
    number = float(text) if _NUMBER.match(text.strip(" ")) else math.nan
    if not low <= number <= high:  # NaN fails too
        limits = f"from {low:g} to {high:g}" if high < math.inf else f"of at least {low:g}"
        raise _bad(name, f"{what} must be a number {limits}, not {text!r}")
    return number


def parse_near(name: str, piece: str) -> NearValue:
    """``latitude|longitude[|distance[|unit]]``; unit km (default), m or mi."""
    parts = [unescape(p) for p in split_escaped(piece, "|")]
    if not 2 <= len(parts) <= 4:
        raise _bad(name, "near takes latitude|longitude|distance|unit")
    latitude = _float(name, parts[0], "latitude", -90, 90)
    longitude = _float(name, parts[1], "longitude", -180, 180)
    unit = parts[3].strip(" ") if len(parts) == 4 else ""
    if unit and unit not in _DISTANCE_UNITS:
        raise _bad(name, f"unknown distance unit {unit!r} (use {', '.join(_DISTANCE_UNITS)})")
    if len(parts) < 3 or not parts[2].strip(" "):
        return NearValue(latitude, longitude, DEFAULT_NEAR_KM)
    factor = _DISTANCE_UNITS[unit or "km"]
    distance = _float(name, parts[2], "the distance", 0, math.inf) * factor
    return NearValue(latitude, longitude, min(distance, MAX_NEAR_KM))


# -- result controls ----------------------------------------------------------------------


def _non_negative(name: str, value: str) -> int:
    if not (value.isascii() and value.isdigit()):
        raise _bad(name, f"must be a non-negative integer, not {value!r}")
    return min(int(value), 2**31 - 1)  # beyond any page size; keeps LIMIT in range


def _control(registry: Registry, query: Query, base: str, modifier: str, value: str) -> None:
    name = f"{base}:{modifier}" if modifier else base
    iterate = base in ("_include", "_revinclude") and modifier in ("iterate", "recurse")
    if modifier and not iterate:
        raise _bad(name, f"unknown modifier :{modifier}")
    if base == "_count":
        query.count = _non_negative(name, value)  # repeated: the last one wins
    elif base == "_offset":
        query.offset = _non_negative(name, value)
    elif base == "_sort":
        query.sort.extend(_sort_keys(registry, query, value))
    elif base in ("_include", "_revinclude"):
        if value:
            query.include.append(Include(value, base == "_revinclude", bool(modifier)))
    elif base == "_summary":
        if value not in _SUMMARY:
            raise _bad(name, f"must be one of {', '.join(sorted(_SUMMARY))}")
        query.summary = value
    elif base == "_total":
        if value not in _TOTAL:
            raise _bad(name, f"must be one of {', '.join(sorted(_TOTAL))}")
        query.total = value
    elif base == "_elements":
        query.elements.extend(e.strip() for e in value.split(",") if e.strip())
    else:
        query.controls[base] = value


def _sort_keys(registry: Registry, query: Query, value: str) -> list[SortKey]:
    keys = []
    for item in (v.strip() for v in value.split(",")):
        code = item.removeprefix("-")
        if not code:
            continue
        param = registry.get(query.res_type, code)
        if param is None:
            query.unknown.append(f"_sort={code}")
            continue
        near = param.type == "special" and param.expression == _GEO_EXPRESSION
        if (
            code not in _SPECIAL_MODIFIERS
            and not near
            and (param.type not in SORTABLE_TYPES or not param.expression)
        ):
            raise _bad("_sort", f"sorting by {param.type} parameter {code!r} is not supported yet")
        keys.append(SortKey(param, item.startswith("-")))
    return keys
