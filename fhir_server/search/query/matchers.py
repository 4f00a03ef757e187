"""Per parameter type: one index row matched against one search value, in SQL and in words.

Each matcher takes the index table (an alias of it), a typed value from ``parse``, the
modifier and the current time, and returns a ``Match``: the SQLAlchemy condition on that
table's row and a readable text, so ``explain`` cannot drift from what runs.

Dates are ranges ``[low, high)`` in UTC, NULL meaning open; the prefixes follow the R4
definitions (``eq``: the search range contains the target range, ``gt``: the range above
the search value overlaps the target...). ``near`` is in ``geo``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

from sqlalchemy import ColumnElement, FromClause, String, and_, func, literal, or_

from fhir_server.search.indexing.indexer import normalize
from fhir_server.search.query import geo
from fhir_server.search.query import parse as p


@dataclass(frozen=True)
class Match:
    """A condition and how to say it."""

    sql: ColumnElement[bool]
    text: str

    def __and__(self, other: Match) -> Match:
        return Match(and_(self.sql, other.sql), f"{self.text} AND {other.text}")

    def __or__(self, other: Match) -> Match:
        return Match(or_(self.sql, other.sql), f"({self.text} OR {other.text})")


def any_of(matches: list[Match]) -> Match:
    if len(matches) == 1:
        return matches[0]
    return Match(or_(*(m.sql for m in matches)), " OR ".join(f"[{m.text}]" for m in matches))


def _eq(column: Any, name: str, value: Any) -> Match:
    if value is None:
        return Match(column.is_(None), f"{name} IS NULL")
    return Match(column == value, f"{name} = {show(value)}")


def show(value: Any) -> str:
    if isinstance(value, datetime):
        utc = value.astimezone(UTC)
        spec = "seconds" if not utc.microsecond else "milliseconds"
        spec = "microseconds" if utc.microsecond % 1000 else spec
        return utc.replace(tzinfo=None).isoformat(timespec=spec) + "Z"
    return repr(value) if isinstance(value, str) else str(value)


# -- token, string, uri, reference --------------------------------------------------------


def _token(t: FromClause, value: p.SearchValue, _modifier: str | None, _now: datetime) -> Match:
    if isinstance(value, p.TextValue):
        sql = t.c.text.istartswith(value.text, autoescape=True)
        return Match(sql, f"text starts with {value.text!r} (any case)")
    if isinstance(value, p.OfTypeValue):
        system = f"of-type:{value.type_system}|{value.type_code}"
        return _eq(t.c.system, "system", system) & _eq(t.c.code, "code", value.value)
    assert isinstance(value, p.TokenValue)
    parts = []
    if value.system is not None:
        parts.append(_eq(t.c.system, "system", value.system or None))
    if value.code is not None:
        parts.append(_eq(t.c.code, "code", value.code))
    return parts[0] if len(parts) == 1 else parts[0] & parts[1]


def any_value(
    kind: str, t: FromClause, values: Sequence[p.SearchValue], modifier: str | None, now: datetime
) -> Match:
    """The row matches one of ``values`` (a parameter's comma-separated OR).

    Tokens ``system|code`` sharing a system become ``system = S AND code IN (...)``: an
    index condition on (code, system), where PostgreSQL before 17 reads a chain of
    ``(system = S AND code = c1) OR ...`` as a filter over every code of the system (the
    SAS query sends up to 25 RPPS numbers of one system).
    """
    if kind == "token" and len(values) > 1:
        by_system: dict[str, list[str]] = {}
        rest: list[p.SearchValue] = []
        for v in values:
            if isinstance(v, p.TokenValue) and v.system and v.code is not None:
                by_system.setdefault(v.system, []).append(v.code)
            else:
                rest.append(v)
        grouped = [
            _eq(t.c.system, "system", system) & _codes(t, codes)
            for system, codes in by_system.items()
        ]
        return any_of(grouped + [_token(t, v, modifier, now) for v in rest])
    return any_of([MATCHERS[kind](t, v, modifier, now) for v in values])


def _codes(t: FromClause, codes: list[str]) -> Match:
    if len(codes) == 1:
        return _eq(t.c.code, "code", codes[0])
    return Match(t.c.code.in_(codes), f"code IN {codes}")


def _string(t: FromClause, value: p.SearchValue, modifier: str | None, _now: datetime) -> Match:
    assert isinstance(value, p.StringValue)
    if modifier == "exact":
        return _eq(t.c.value, "value", value.text)
    norm = normalize(value.text)
    if modifier == "contains":
        return Match(t.c.norm.contains(norm, autoescape=True), f"norm contains {norm!r}")
    return Match(t.c.norm.startswith(norm, autoescape=True), f"norm starts with {norm!r}")


def _uri(t: FromClause, value: p.SearchValue, modifier: str | None, _now: datetime) -> Match:
    # substr, not LIKE: SQLite's LIKE ignores case, URIs do not.
    assert isinstance(value, p.UriValue)
    uri = value.uri
    if modifier == "below":
        sql = func.substr(t.c.value, 1, len(uri)) == uri
        return Match(sql, f"value starts with {uri!r}")
    if modifier == "above":
        sql = func.substr(literal(uri, String), 1, func.length(t.c.value)) == t.c.value
        return Match(sql, f"value is a prefix of {uri!r}")
    return _eq(t.c.value, "value", uri)


def _reference(t: FromClause, value: p.SearchValue, _modifier: str | None, _now: datetime) -> Match:
    assert isinstance(value, p.ReferenceValue)
    if value.url is not None:
        return _eq(t.c.url, "url", value.url)
    # A relative query names a resource of this server: absolute references (which point
    # elsewhere) are not matched by it.
    match = _eq(t.c.target_id, "target_id", value.res_id) & _eq(t.c.url, "url", None)
    if value.res_type is not None:
        match = _eq(t.c.target_type, "target_type", value.res_type) & match
    return match


# -- dates --------------------------------------------------------------------------------


class Logic(Protocol):
    """What a date comparison is built from: SQL conditions (``Match``) or Python code
    (``availability.Code``); both combine with ``&`` and ``|``."""

    def __and__(self: L, other: L) -> L: ...

    def __or__(self: L, other: L) -> L: ...


L = TypeVar("L", bound=Logic)
L_co = TypeVar("L_co", bound=Logic, covariant=True)


class Side(Protocol[L_co]):
    """The target side of a date comparison, in the language ``L`` of its conditions."""

    width: timedelta | None

    def starts_before(self, x: datetime) -> L_co: ...
    def starts_at_or_after(self, x: datetime) -> L_co: ...
    def ends_after(self, x: datetime) -> L_co: ...
    def ends_at_or_before(self, x: datetime) -> L_co: ...
    def low_after(self, x: datetime) -> L_co: ...
    def low_before(self, x: datetime) -> L_co: ...


class Span:
    """The target side of a date comparison in SQL: an index range or a point column.

    ``width``, when known, is the longest a target range can be (``high - low``); it lets
    every prefix but ``ne`` add a condition on ``low`` alone, which an index on ``low`` can
    range-scan (see ``composites``)."""

    def __init__(self, low: Any, high: Any, point: bool, width: timedelta | None = None) -> None:
        self.low, self.high, self.point, self.width = low, high, point, width

    def starts_before(self, x: datetime) -> Match:
        if self.point:
            return Match(self.low < x, f"at < {show(x)}")
        return Match(or_(self.low.is_(None), self.low < x), f"(low < {show(x)} or open)")

    def starts_at_or_after(self, x: datetime) -> Match:
        return Match(self.low >= x, f"{'at' if self.point else 'low'} >= {show(x)}")

    def ends_after(self, x: datetime) -> Match:
        # a point t stands for [t, t+ε): it ends after x when t >= x
        if self.point:
            return Match(self.high >= x, f"at >= {show(x)}")
        return Match(or_(self.high.is_(None), self.high > x), f"(high > {show(x)} or open)")

    def ends_at_or_before(self, x: datetime) -> Match:
        if self.point:
            return Match(self.high < x, f"at < {show(x)}")
        return Match(self.high <= x, f"high <= {show(x)}")

    def low_after(self, x: datetime) -> Match:
        return Match(self.low > x, f"low > {show(x)}")

    def low_before(self, x: datetime) -> Match:
        return Match(self.low < x, f"low < {show(x)}")


def approximate_range(low: datetime, high: datetime, now: datetime) -> tuple[datetime, datetime]:
    """``ap``: the value widened by 10% of its distance from now, at least one day."""
    margin = max(abs(now - low) / 10, timedelta(days=1))
    lowest, highest = datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)
    wide_low = low - margin if low - lowest > margin else lowest
    wide_high = high + margin if highest - high > margin else highest
    return wide_low, wide_high


def date_match(span: Side[L], value: p.SearchValue, now: datetime) -> L:
    """The prefixed date ``value`` against ``span``, in the span's language: SQL for the
    index tables, Python for the availability cache, from this one definition."""
    match = _date_match(span, value, now)
    if span.width is None:
        return match
    assert isinstance(value, p.DateValue)
    lower, upper = low_bounds(value, span.width, now)
    if lower is not None:
        match = match & span.low_after(lower)
    if upper is not None:
        match = match & span.low_before(upper)
    return match


def low_bounds(
    value: p.DateValue, width: timedelta, now: datetime
) -> tuple[datetime | None, datetime | None]:
    """Bounds on ``low`` implied by a match when ``low <= high <= low + width``: redundant,
    but they turn a condition on ``high`` into an index range on ``low``."""
    low, high, prefix = value.low, value.high, value.prefix
    if prefix in ("ge", "gt"):  # high > value (or within it): low > value - width
        return (low if prefix == "ge" else high) - width, None
    if prefix in ("le", "eq"):  # starts before the value ends
        return None, high
    if prefix in ("lt", "eb"):
        return None, low
    if prefix == "ap":
        wide_low, wide_high = approximate_range(low, high, now)
        return wide_low - width, wide_high
    return None, None  # ne; sa is already "low >= value's end"


def _date_match(span: Side[L], value: p.SearchValue, now: datetime) -> L:
    assert isinstance(value, p.DateValue)
    low, high = value.low, value.high

    def within() -> L:
        return span.starts_at_or_after(low) & span.ends_at_or_before(high)

    prefix = value.prefix
    if prefix == "ne":
        return span.starts_before(low) | span.ends_after(high)
    if prefix == "gt":
        return span.ends_after(high)
    if prefix == "lt":
        return span.starts_before(low)
    if prefix == "ge":
        return span.ends_after(high) | within()
    if prefix == "le":
        return span.starts_before(low) | within()
    if prefix == "sa":
        return span.starts_at_or_after(high)
    if prefix == "eb":
        return span.ends_at_or_before(low)
    if prefix == "ap":
        wide_low, wide_high = approximate_range(low, high, now)
        return span.starts_before(wide_high) & span.ends_after(wide_low)
    return within()


def _date(t: FromClause, value: p.SearchValue, _modifier: str | None, now: datetime) -> Match:
    return date_match(Span(t.c.low, t.c.high, point=False), value, now)


# -- numbers and quantities ---------------------------------------------------------------


def _number_match(column: Any, value: p.NumberValue) -> Match:
    v, low, high = value.value, value.low, value.high
    prefix = value.prefix
    if prefix == "ap":
        margin = abs(v) / 10
        low, high = v - margin, v + margin
        return Match(column.between(low, high), f"value between {low} and {high}")
    compare: dict[str, Callable[[Any], ColumnElement[bool]]] = {
        "gt": lambda c: c > v,
        "sa": lambda c: c > v,
        "lt": lambda c: c < v,
        "eb": lambda c: c < v,
        "ge": lambda c: c >= v,
        "le": lambda c: c <= v,
    }
    signs = {"gt": ">", "sa": ">", "lt": "<", "eb": "<", "ge": ">=", "le": "<="}
    if prefix in compare:
        return Match(compare[prefix](column), f"value {signs[prefix]} {v}")
    if prefix == "ne":
        return Match(or_(column < low, column >= high), f"value outside [{low}, {high})")
    return Match(and_(column >= low, column < high), f"value in [{low}, {high})")


def _number(t: FromClause, value: p.SearchValue, _modifier: str | None, _now: datetime) -> Match:
    assert isinstance(value, p.NumberValue)
    return _number_match(t.c.value, value)


def _quantity(t: FromClause, value: p.SearchValue, _modifier: str | None, _now: datetime) -> Match:
    assert isinstance(value, p.QuantityValue)
    match = _number_match(t.c.value, value.number)
    if value.system is not None:
        match = match & _eq(t.c.system, "system", value.system)
    if value.code is not None:
        match = match & _eq(t.c.code, "code", value.code)
    return match


def _near(t: FromClause, value: p.SearchValue, _modifier: str | None, _now: datetime) -> Match:
    assert isinstance(value, p.NearValue)
    lat, lon, km = value.latitude, value.longitude, value.distance_km
    sql = geo.within(t.c.latitude, t.c.longitude, lat, lon, km)
    return Match(sql, f"within {km:g} km of ({lat:g}, {lon:g}): box, then haversine")


Matcher = Callable[[FromClause, p.SearchValue, str | None, datetime], Match]
MATCHERS: dict[str, Matcher] = {
    "token": _token,
    "string": _string,
    "uri": _uri,
    "reference": _reference,
    "date": _date,
    "number": _number,
    "quantity": _quantity,
    "special": _near,
}
