"""Search plan: a parsed ``Query`` -> one SQLAlchemy Core SELECT (bound parameters only).

https://hl7.org/fhir/R4/search.html. The statement selects the current, non-deleted
resources of the type; each criterion is ``resources.pk IN (SELECT res_pk FROM idx_<kind>
WHERE res_type = ? AND param = ? AND (<value 1> OR <value 2> ...))`` (``NOT IN`` for
``:not`` and ``:missing=true``), so criteria compose by AND and later steps (chains,
``_has``) can plug their own subqueries in. Each parameter type has one matcher below that
returns both the SQL and a readable text, so ``explain`` cannot drift from what runs.

Dates are ranges ``[low, high)`` in UTC, NULL meaning open; the prefixes follow the R4
definitions (``eq``: the search range contains the target range, ``gt``: the range above
the search value overlaps the target...). ``_lastUpdated`` compares the instant column
``resources.last_updated`` as a point.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, String, Table, and_, false, func, literal, or_, select
from sqlalchemy.sql import Select

from fhir_server.core import fhirtime
from fhir_server.search import parse as p
from fhir_server.search.indexer import normalize
from fhir_server.search.parameters import Registry
from fhir_server.storage import schema
from fhir_server.storage.port import ReadSession

AnySelect = Select[*tuple[Any, ...]]
R = schema.resources


@dataclass(frozen=True)
class _Match:
    """A condition and how to say it."""

    sql: ColumnElement[bool]
    text: str

    def __and__(self, other: _Match) -> _Match:
        return _Match(and_(self.sql, other.sql), f"{self.text} AND {other.text}")

    def __or__(self, other: _Match) -> _Match:
        return _Match(or_(self.sql, other.sql), f"({self.text} OR {other.text})")


def _any(matches: list[_Match]) -> _Match:
    if len(matches) == 1:
        return matches[0]
    return _Match(or_(*(m.sql for m in matches)), " OR ".join(f"[{m.text}]" for m in matches))


def _eq(column: Any, name: str, value: Any) -> _Match:
    if value is None:
        return _Match(column.is_(None), f"{name} IS NULL")
    return _Match(column == value, f"{name} = {_show(value)}")


def _show(value: Any) -> str:
    if isinstance(value, datetime):
        utc = value.astimezone(UTC)
        spec = "seconds" if not utc.microsecond else "milliseconds"
        spec = "microseconds" if utc.microsecond % 1000 else spec
        return utc.replace(tzinfo=None).isoformat(timespec=spec) + "Z"
    return repr(value) if isinstance(value, str) else str(value)


# -- token, string, uri, reference --------------------------------------------------------


def _token(t: Table, value: p.SearchValue, _modifier: str | None, _now: datetime) -> _Match:
    if isinstance(value, p.TextValue):
        sql = t.c.text.istartswith(value.text, autoescape=True)
        return _Match(sql, f"text starts with {value.text!r} (any case)")
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


def _string(t: Table, value: p.SearchValue, modifier: str | None, _now: datetime) -> _Match:
    assert isinstance(value, p.StringValue)
    if modifier == "exact":
        return _eq(t.c.value, "value", value.text)
    norm = normalize(value.text)
    if modifier == "contains":
        return _Match(t.c.norm.contains(norm, autoescape=True), f"norm contains {norm!r}")
    return _Match(t.c.norm.startswith(norm, autoescape=True), f"norm starts with {norm!r}")


def _uri(t: Table, value: p.SearchValue, modifier: str | None, _now: datetime) -> _Match:
    # substr, not LIKE: SQLite's LIKE ignores case, URIs do not.
    assert isinstance(value, p.UriValue)
    uri = value.uri
    if modifier == "below":
        sql = func.substr(t.c.value, 1, len(uri)) == uri
        return _Match(sql, f"value starts with {uri!r}")
    if modifier == "above":
        sql = func.substr(literal(uri, String), 1, func.length(t.c.value)) == t.c.value
        return _Match(sql, f"value is a prefix of {uri!r}")
    return _eq(t.c.value, "value", uri)


def _reference(t: Table, value: p.SearchValue, _modifier: str | None, _now: datetime) -> _Match:
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


class _Span:
    """The target side of a date comparison: an index range or a point column."""

    def __init__(self, low: Any, high: Any, point: bool) -> None:
        self.low, self.high, self.point = low, high, point

    def starts_before(self, x: datetime) -> _Match:
        if self.point:
            return _Match(self.low < x, f"at < {_show(x)}")
        return _Match(or_(self.low.is_(None), self.low < x), f"(low < {_show(x)} or open)")

    def starts_at_or_after(self, x: datetime) -> _Match:
        return _Match(self.low >= x, f"{'at' if self.point else 'low'} >= {_show(x)}")

    def ends_after(self, x: datetime) -> _Match:
        # a point t stands for [t, t+ε): it ends after x when t >= x
        if self.point:
            return _Match(self.high >= x, f"at >= {_show(x)}")
        return _Match(or_(self.high.is_(None), self.high > x), f"(high > {_show(x)} or open)")

    def ends_at_or_before(self, x: datetime) -> _Match:
        if self.point:
            return _Match(self.high < x, f"at < {_show(x)}")
        return _Match(self.high <= x, f"high <= {_show(x)}")


def approximate_range(low: datetime, high: datetime, now: datetime) -> tuple[datetime, datetime]:
    """``ap``: the value widened by 10% of its distance from now, at least one day."""
    margin = max(abs(now - low) / 10, timedelta(days=1))
    lowest, highest = datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)
    wide_low = low - margin if low - lowest > margin else lowest
    wide_high = high + margin if highest - high > margin else highest
    return wide_low, wide_high


def _date_match(span: _Span, value: p.SearchValue, now: datetime) -> _Match:
    assert isinstance(value, p.DateValue)
    low, high = value.low, value.high

    def within() -> _Match:
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


def _date(t: Table, value: p.SearchValue, _modifier: str | None, now: datetime) -> _Match:
    return _date_match(_Span(t.c.low, t.c.high, point=False), value, now)


# -- numbers and quantities ---------------------------------------------------------------


def _number_match(column: Any, value: p.NumberValue) -> _Match:
    v, low, high = value.value, value.low, value.high
    prefix = value.prefix
    if prefix == "ap":
        margin = abs(v) / 10
        low, high = v - margin, v + margin
        return _Match(column.between(low, high), f"value between {low} and {high}")
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
        return _Match(compare[prefix](column), f"value {signs[prefix]} {v}")
    if prefix == "ne":
        return _Match(or_(column < low, column >= high), f"value outside [{low}, {high})")
    return _Match(and_(column >= low, column < high), f"value in [{low}, {high})")


def _number(t: Table, value: p.SearchValue, _modifier: str | None, _now: datetime) -> _Match:
    assert isinstance(value, p.NumberValue)
    return _number_match(t.c.value, value)


def _quantity(t: Table, value: p.SearchValue, _modifier: str | None, _now: datetime) -> _Match:
    assert isinstance(value, p.QuantityValue)
    match = _number_match(t.c.value, value.number)
    if value.system is not None:
        match = match & _eq(t.c.system, "system", value.system)
    if value.code is not None:
        match = match & _eq(t.c.code, "code", value.code)
    return match


_Matcher = Callable[[Table, p.SearchValue, str | None, datetime], _Match]
_MATCHERS: dict[str, _Matcher] = {
    "token": _token,
    "string": _string,
    "uri": _uri,
    "reference": _reference,
    "date": _date,
    "number": _number,
    "quantity": _quantity,
}


# -- criteria -----------------------------------------------------------------------------


def _criterion(res_type: str, c: p.Criterion, now: datetime) -> _Match:
    label = f"{res_type}.{c.name}={c.raw}"
    code = c.param.code
    if code == "_id":
        ids = [v.code for v in c.values if isinstance(v, p.TokenValue)]
        if c.modifier == "not":
            return _Match(R.c.res_id.not_in(ids), f"{label} -> res_id NOT IN {ids}")
        return _Match(R.c.res_id.in_(ids), f"{label} -> res_id IN {ids}")
    if code == "_lastUpdated":
        span = _Span(R.c.last_updated, R.c.last_updated, point=True)
        match = _any([_date_match(span, v, now) for v in c.values])
        return _Match(match.sql, f"{label} -> last_updated: {match.text}")
    table = schema.INDEX_TABLES[c.param.type]
    rows = select(table.c.res_pk).where(table.c.res_type == res_type, table.c.param == code)
    where = f"{table.name}(param={code}"
    if c.modifier == "missing":
        missing = isinstance(c.values[0], p.MissingValue) and c.values[0].missing
        if missing:
            return _Match(R.c.pk.not_in(rows), f"{label} -> no {where})")
        return _Match(R.c.pk.in_(rows), f"{label} -> some {where})")
    match = _any([_MATCHERS[c.param.type](table, v, c.modifier, now) for v in c.values])
    rows = rows.where(match.sql)
    if c.modifier == "not":
        return _Match(R.c.pk.not_in(rows), f"{label} -> none of {where}, {match.text})")
    return _Match(R.c.pk.in_(rows), f"{label} -> {where}, {match.text})")


def _order(query: p.Query) -> tuple[list[Any], str]:
    order: list[Any] = []
    names = []
    for key in query.sort:
        param = key.param
        names.append(f"{'-' if key.descending else ''}{param.code}")
        if param.code in ("_id", "_lastUpdated"):
            column = R.c.res_id if param.code == "_id" else R.c.last_updated
            order.append(column.desc() if key.descending else column.asc())
            continue
        # Several values: ascending sorts by the smallest, descending by the largest.
        table = schema.INDEX_TABLES[param.type]
        name = {"string": "norm", "token": "code", "date": "low"}.get(param.type, "value")
        column = table.c.high if param.type == "date" and key.descending else table.c[name]
        pick = func.max(column) if key.descending else func.min(column)
        value = (
            select(pick)
            .where(table.c.res_pk == R.c.pk, table.c.param == param.code)
            .scalar_subquery()
        )
        order.append((value.desc() if key.descending else value.asc()).nulls_last())
    if not query.sort:
        order.append(R.c.last_updated.asc())
        names.append("_lastUpdated")
    order.append(R.c.res_id.asc())
    return order, ", ".join([*names, "_id"])


# -- statements ---------------------------------------------------------------------------


def conditions(query: p.Query, *, now: datetime | None = None) -> list[ColumnElement[bool]]:
    """The WHERE conditions (ANDed) selecting the query's matches in ``resources``."""
    moment = now or fhirtime.utcnow()
    base = [R.c.res_type == query.res_type, R.c.deleted == false()]
    return base + [_criterion(query.res_type, c, moment).sql for c in query.criteria]


def statement(
    query: p.Query, *, now: datetime | None = None, columns: Sequence[Any] | None = None
) -> AnySelect:
    """Matches in result order, ``_offset`` and ``_count`` applied (default columns: pk,
    res_id, last_updated)."""
    cols = list(columns) if columns is not None else [R.c.pk, R.c.res_id, R.c.last_updated]
    stmt = select(*cols).where(*conditions(query, now=now)).order_by(*_order(query)[0])
    if query.offset:
        stmt = stmt.offset(query.offset)
    if query.count is not None:
        stmt = stmt.limit(query.count)
    return stmt


def count_statement(query: p.Query, *, now: datetime | None = None) -> AnySelect:
    """The number of matches (``_count`` and ``_offset`` ignored)."""
    return select(func.count()).select_from(R).where(*conditions(query, now=now))


def explain(query: p.Query, *, now: datetime | None = None) -> str:
    """The plan in words: one line per criterion, then the order and window."""
    moment = now or fhirtime.utcnow()
    lines = [_criterion(query.res_type, c, moment).text for c in query.criteria]
    window = f", offset {query.offset}" if query.offset else ""
    window += f", limit {query.count}" if query.count is not None else ""
    lines.append(f"{query.res_type}: not deleted, order by {_order(query)[1]}{window}")
    return "\n".join(lines)


async def search_ids(
    session: ReadSession,
    registry: Registry,
    res_type: str,
    pairs: Sequence[tuple[str, str]],
    *,
    default_tz: ZoneInfo,
    now: datetime | None = None,
) -> tuple[list[str], p.Query]:
    """Ids of the matching resources in result order, and the parsed query."""
    query = p.parse(registry, res_type, pairs, default_tz=default_tz)
    if query.count == 0:
        return [], query
    rows = await session.fetch(statement(query, now=now, columns=[R.c.res_id]))
    return [row[0] for row in rows], query


async def count(
    session: ReadSession,
    registry: Registry,
    res_type: str,
    pairs: Sequence[tuple[str, str]],
    *,
    default_tz: ZoneInfo,
    now: datetime | None = None,
) -> int:
    """How many resources match (``_count`` and ``_offset`` ignored)."""
    query = p.parse(registry, res_type, pairs, default_tz=default_tz)
    rows = await session.fetch(count_statement(query, now=now))
    return int(rows[0][0])
