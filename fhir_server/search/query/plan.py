"""Search plan: a parsed ``Query`` -> one SQLAlchemy Core SELECT (bound parameters only).

https://hl7.org/fhir/R4/search.html. The statement selects the current, non-deleted
resources of the type; each criterion is ``resources.pk IN (SELECT res_pk FROM idx_<kind>
WHERE res_type = ? AND param = ? AND (<value 1> OR <value 2> ...))`` (``NOT EXISTS`` for
``:not`` and ``:missing=true``), so criteria compose by AND. The per-type value SQL is in
``matchers``; each returns the SQL and a readable text, so ``explain`` cannot drift.

Chains nest the same shape through ``idx_reference`` (uncorrelated ``IN`` subqueries, which
both engines turn into semi-joins and may drive from the most selective side):

- forward ``schedule.actor:Practitioner.identifier=X`` on Slot::

    pk IN (SELECT res_pk FROM idx_reference WHERE res_type='Slot' AND param='schedule'
           AND url IS NULL AND target_type='Schedule' AND target_id IN (
             SELECT res_id FROM resources WHERE res_type='Schedule' AND NOT deleted
             AND pk IN (SELECT res_pk FROM idx_reference WHERE ... param='actor'
               AND target_type='Practitioner' AND target_id IN (
                 SELECT res_id FROM resources WHERE res_type='Practitioner' ...
                 AND pk IN (SELECT res_pk FROM idx_token WHERE ... X)))))

- reverse ``_has:Slot:schedule:status=free`` on Schedule::

    res_id IN (SELECT target_id FROM idx_reference WHERE res_type='Slot'
               AND param='schedule' AND target_type='Schedule' AND url IS NULL
               AND res_pk IN (SELECT res_pk FROM idx_token WHERE ... 'free'))

Chains follow relative references only (``url IS NULL``): an absolute URL names a resource
on another server even when its tail looks like one of ours.

Every hop reads only the rows the caller may see (``Hops``, from the session's read scope):
else a chain or ``_has`` would tell a vendor which of another vendor's Appointments point
at a slot, or a regulator which Schedules hold a Slot of a type it may not see. A hop on a
type the caller sees whole costs nothing more.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Float,
    FromClause,
    Numeric,
    Table,
    exists,
    false,
    func,
    select,
    true,
    tuple_,
    type_coerce,
    union_all,
)
from sqlalchemy.sql import Select

from fhir_server.core import errors, fhirtime
from fhir_server.search.indexing import composites
from fhir_server.search.query import geo
from fhir_server.search.query import parse as p
from fhir_server.search.query.chain import Link
from fhir_server.search.query.matchers import Match, Span, any_of, any_value, date_match
from fhir_server.search.query.matchers import approximate_range as approximate_range
from fhir_server.search.registry.parameters import Registry, SearchParameter
from fhir_server.storage import schema
from fhir_server.storage.port import ReadSession

AnySelect = Select[*tuple[Any, ...]]
R = schema.resources
REF = schema.idx_reference
_ROW_CODES = frozenset({"_id", "_lastUpdated"})  # columns of resources, not index rows
# The rows of ``resources`` (an alias given) of these types the caller may see on a chain's
# hop: a condition, or None when it sees every row of them (``run.hops_of`` builds it).
Hops = Callable[[Sequence[str], FromClause], ColumnElement[bool] | None]


def hops_of(session: ReadSession) -> Hops | None:
    """The hops ``session``'s caller may read through (None: every row of every type)."""
    scope = session.scope
    if scope.everything:
        return None

    def hops(types: Sequence[str], rows: FromClause) -> ColumnElement[bool] | None:
        if all(scope.whole_type(t) for t in types):
            return None
        return session.visible(rows)

    return hops


@dataclass(frozen=True)
class _Scope:
    """What a group of criteria is about: resources of ``types`` identified by ``pk``.

    ``row`` is the ``resources`` table (or an alias) when it is joined; a reverse hop's
    source side can do without it (``pk`` is then ``idx_reference.res_pk``): index rows
    only exist for current, non-deleted versions.
    """

    pk: Any
    types: tuple[str, ...]
    row: FromClause | None
    alias: _Aliases
    hops: Hops | None = None  # None: every row of every hop (the server's own searches)


class _Aliases:
    """Table aliases for one statement, taken in order from a shared pool.

    Fixed names (``idx_token_0``, ``idx_token_1``...) give queries of the same shape the
    same SQL text, so SQLAlchemy's compiled cache and the driver's prepared statements are
    reused; and a pooled alias builds its column collection once, which was a third of the
    time spent planning a SAS search. Each alias appears once per statement (no accidental
    correlation), because one ``_Aliases`` numbers them for the whole statement.
    """

    def __init__(self) -> None:
        self.used: dict[str, int] = {}

    def __call__(self, table: Table) -> FromClause:
        n = self.used.get(table.name, 0)
        self.used[table.name] = n + 1
        return _pooled(table, n)


@lru_cache(maxsize=4096)
def _pooled(table: Table, n: int) -> FromClause:
    alias = table.alias(f"{table.name}_{n}")
    alias.c  # noqa: B018 - build the column collection now, once
    return alias


def _in(column: Any, values: Sequence[str]) -> ColumnElement[bool]:
    result: ColumnElement[bool] = column == values[0] if len(values) == 1 else column.in_(values)
    return result


# -- one criterion ------------------------------------------------------------------------


def _term(scope: _Scope, c: p.Criterion, now: datetime) -> Match:
    """A criterion without (or at the end of) a chain, on the scope's resources."""
    code = c.param.code
    if not c.values and c.modifier is None:  # a prefetched chain that reached nothing
        return Match(false(), f"{c.name}: reaches no resource")
    if code in _ROW_CODES:
        assert scope.row is not None
        if code == "_id":
            ids = [v.code for v in c.values if isinstance(v, p.TokenValue)]
            if c.modifier == "not":
                return Match(scope.row.c.res_id.not_in(ids), f"res_id NOT IN {ids}")
            return Match(scope.row.c.res_id.in_(ids), f"res_id IN {ids}")
        column = scope.row.c.last_updated
        match = any_of([date_match(Span(column, column, point=True), v, now) for v in c.values])
        return Match(match.sql, f"last_updated: {match.text}")
    base = schema.INDEX_TABLES[c.param.type]
    table = scope.alias(base)
    types = c.res_types or scope.types
    where = f"{base.name}(param={code}"
    if c.modifier in ("missing", "not"):
        # Correlated on the resource: NOT EXISTS is an anti-join on both engines, where
        # PostgreSQL runs NOT IN (subquery) as a subplan.
        rows = select(table.c.res_pk).where(table.c.res_pk == scope.pk, table.c.param == code)
        if c.modifier == "not":
            match = any_value(c.param.type, table, c.values, None, now)
            return Match(~exists(rows.where(match.sql)), f"none of {where}, {match.text})")
        if isinstance(c.values[0], p.MissingValue) and c.values[0].missing:
            return Match(~exists(rows), f"no {where})")
        return Match(exists(rows), f"some {where})")
    if _probe_each(c):
        return _probes(scope, c, types, now)
    match = any_value(c.param.type, table, c.values, c.modifier, now)
    rows = select(table.c.res_pk).where(
        _in(table.c.res_type, types), table.c.param == code, match.sql
    )
    return Match(scope.pk.in_(rows), f"{where}, {match.text})")


_MAX_PROBES = 100


def _probe_each(c: p.Criterion) -> bool:
    """Several plain ``code`` / ``system|code`` tokens (the SAS search's list of RPPS)."""
    return (
        c.param.type == "token"
        and c.modifier is None
        and 1 < len(c.values) <= _MAX_PROBES
        and all(isinstance(v, p.TokenValue) and v.code is not None for v in c.values)
    )


def _probes(scope: _Scope, c: p.Criterion, types: Sequence[str], now: datetime) -> Match:
    """One index probe per token value, as ``UNION ALL`` branches.

    ``code IN (…)`` (or ``= ANY``) is the natural SQL, but PostgreSQL underestimates the
    rows of one type and parameter (``res_type`` and ``param`` are correlated) and then
    reads it as a filter over every code of the parameter: at 10 M slots that is every
    practitioner's identifier (17,000 rows) for 5 RPPS numbers. An equality per branch is
    always an index condition, whatever the estimates."""
    base = schema.INDEX_TABLES["token"]
    branches = []
    texts = []
    for value in c.values:
        table = scope.alias(base)
        match = any_value("token", table, [value], None, now)
        branches.append(
            select(table.c.res_pk).where(
                _in(table.c.res_type, types), table.c.param == c.param.code, match.sql
            )
        )
        texts.append(match.text)
    return Match(
        scope.pk.in_(union_all(*branches)),
        f"{base.name}(param={c.param.code}, one probe per value: {' | '.join(texts)})",
    )


def _points(
    ref: FromClause, c: p.Criterion, alias: _Aliases, now: datetime, hops: Hops | None
) -> Match:
    """The rows of ``ref`` (target_type, target_id) pointing at a match of the rest of
    ``c``'s chain: ``code[:Type].rest``, among the targets the caller may see."""
    link, rest = c.path[0], replace(c, path=c.path[1:])
    target = alias(R)
    (inner,) = _group([rest], _Scope(target.c.pk, link.targets, target, alias, hops), now)
    where = [_in(target.c.res_type, link.targets), target.c.deleted == false(), inner.sql]
    seen = hops(link.targets, target) if hops is not None else None
    if seen is not None:
        where.append(seen)
    points: ColumnElement[bool]
    if len(link.targets) == 1:
        ids = select(target.c.res_id).where(*where)
        points = (ref.c.target_type == link.targets[0]) & ref.c.target_id.in_(ids)
    else:
        pairs = select(target.c.res_type, target.c.res_id).where(*where)
        points = tuple_(ref.c.target_type, ref.c.target_id).in_(pairs)
    return Match(points, f"{link.code} -> {'|'.join(link.targets)} where ({inner.text})")


def _forward(scope: _Scope, c: p.Criterion, now: datetime) -> Match:
    """``code[:Type].rest``: the scope's ``code`` reference points at a match of ``rest``."""
    link, ref = c.path[0], scope.alias(REF)
    points = _points(ref, c, scope.alias, now, scope.hops)
    rows = select(ref.c.res_pk).where(
        _in(ref.c.res_type, link.sources), ref.c.param == link.code, ref.c.url.is_(None), points.sql
    )
    return Match(scope.pk.in_(rows), points.text)


# -- reference + date pairs (``composites``) ----------------------------------------------


def _pair_target(
    rd: FromClause, c: p.Criterion, pair: composites.Pair, scope: _Scope, now: datetime
) -> Match | None:
    """``c`` as a condition on an ``idx_ref_date`` row, when it is about ``pair.reference``:
    a chain starting with it, or plain relative references without a modifier."""
    if c.path:
        if c.path[0].reverse or c.path[0].code != pair.reference:
            return None
        return _points(rd, c, scope.alias, now, scope.hops)
    if c.param.code != pair.reference or c.modifier is not None:
        return None
    if not c.values:  # a prefetched chain that reached nothing
        return Match(false(), "reaches no resource")
    by_type: dict[str | None, list[str]] = {}
    for v in c.values:
        if not isinstance(v, p.ReferenceValue) or v.url is not None or v.res_id is None:
            return None
        by_type.setdefault(v.res_type, []).append(v.res_id)
    matches = []
    for res_type, ids in by_type.items():  # type = T AND id IN (...): one index probe each
        match = Match(_in(rd.c.target_id, ids), f"target_id IN {ids}")
        if res_type is not None:
            match = Match(rd.c.target_type == res_type, f"target_type = {res_type!r}") & match
        matches.append(match)
    return any_of(matches)


def _fused(criteria: Sequence[p.Criterion], scope: _Scope, now: datetime) -> dict[int, Match]:
    """Criteria answered together by ``idx_ref_date``, by position: the first criterion on a
    pair's reference becomes one range scan holding every plain criterion on its date; the
    date criteria become ``_WITH_PAIR`` (true). Equivalent because both elements of a pair
    are single-valued."""
    out: dict[int, Match] = {}
    if len(scope.types) != 1:
        return out
    for pair in composites.PAIRS.get(scope.types[0], ()):
        dates = [i for i, c in enumerate(criteria) if _on_pair_date(c, pair)]
        if not dates:
            continue
        rd = scope.alias(schema.idx_ref_date)
        for i, c in enumerate(criteria):
            target = None if i in out else _pair_target(rd, c, pair, scope, now)
            if target is None:
                continue
            windows = _windows(rd, pair, [criteria[j] for j in dates], now)
            rows = select(rd.c.res_pk).where(
                rd.c.res_type == pair.res_type,
                rd.c.param == pair.name,
                target.sql,
                *(w.sql for w in windows),
            )
            text = " AND ".join([target.text] + [f"{pair.date}: {w.text}" for w in windows])
            out[i] = Match(scope.pk.in_(rows), f"idx_ref_date(param={pair.name}, {text})")
            for j in dates:
                out[j] = Match(_WITH_PAIR, f"(in the {pair.name} scan above)")
            break
    return out


_WITH_PAIR = true()


def _on_pair_date(c: p.Criterion, pair: composites.Pair) -> bool:
    """A plain criterion on the pair's date (no chain, no modifier): it can join the scan."""
    return not c.path and c.param.code == pair.date and c.modifier is None and bool(c.values)


def _windows(
    rd: FromClause, pair: composites.Pair, dates: Sequence[p.Criterion], now: datetime
) -> list[Match]:
    """Date criteria as conditions on an ``idx_ref_date`` row (values ORed, criteria ANDed)."""
    span = Span(rd.c.low, rd.c.high, point=False, width=pair.width)
    return [any_of([date_match(span, v, now) for v in c.values]) for c in dates]


def _sqls(matches: Sequence[Match]) -> list[ColumnElement[bool]]:
    """The conditions to AND, without the placeholders of fused criteria."""
    return [m.sql for m in matches if m.sql is not _WITH_PAIR]


def _needs_row(criteria: Sequence[p.Criterion]) -> bool:
    return any(
        (c.path and c.path[0].reverse) or (not c.path and c.param.code in _ROW_CODES)
        for c in criteria
    )


def _reverse(scope: _Scope, link: Link, members: list[p.Criterion], now: datetime) -> Match:
    """``_has:Type:code:...``: some resource of ``Type`` whose ``code`` points at the scope's
    resource matches every one of ``members`` (see ``_group`` on why all at once).

    When ``code`` and some members' date form a pair (``composites``), the hop reads
    ``idx_ref_date`` and those members become its range scan: "schedules with a slot in
    this window" probes each schedule's slots by start instead of reading them all."""
    assert scope.row is not None
    source = link.sources[0]
    pair = composites.pair_for(source, link.code)
    dates = [m for m in members if pair and _on_pair_date(m, pair)]
    ref: FromClause
    texts: list[str] = []
    if pair is not None and dates:
        ref = scope.alias(schema.idx_ref_date)
        windows = _windows(ref, pair, dates, now)
        where = [ref.c.res_type == source, ref.c.param == pair.name]
        where += [w.sql for w in windows]
        texts += [f"{pair.date}: {w.text} (idx_ref_date {pair.name})" for w in windows]
        members = [m for m in members if all(m is not d for d in dates)]
    else:
        ref = scope.alias(REF)
        where = [ref.c.res_type == source, ref.c.param == link.code, ref.c.url.is_(None)]
    where.append(_in(ref.c.target_type, link.targets))
    # the pointing resources are among the caller's rows (tested on the table: no alias
    # is taken, so the statement of a caller who sees them all is the same)
    hidden = scope.hops is not None and scope.hops(link.sources, R) is not None
    if hidden or (members and _needs_row(members)):
        row = scope.alias(R)
        sub = _Scope(row.c.pk, link.sources, row, scope.alias, scope.hops)
        inner = _group(members, sub, now)
        pks = select(row.c.pk).where(row.c.res_type == source, row.c.deleted == false())
        seen = scope.hops(link.sources, row) if scope.hops is not None else None
        if seen is not None:
            pks = pks.where(seen)
            texts.append(f"{source} the caller may see")
        where.append(ref.c.res_pk.in_(pks.where(*_sqls(inner))))
        texts += [m.text for m in inner]
    elif members:
        sub = _Scope(ref.c.res_pk, link.sources, None, scope.alias, scope.hops)
        inner = _group(members, sub, now)
        where += _sqls(inner)
        texts += [m.text for m in inner]
    if len(scope.types) == 1:
        sql = scope.row.c.res_id.in_(select(ref.c.target_id).where(*where))
    else:
        found = select(ref.c.target_type, ref.c.target_id).where(*where)
        sql = tuple_(scope.row.c.res_type, scope.row.c.res_id).in_(found)
    return Match(sql, f"some {source} with {link.code} -> here and ({' AND '.join(texts)})")


def _group(criteria: Sequence[p.Criterion], scope: _Scope, now: datetime) -> list[Match]:
    """The ANDed matches of ``criteria`` on one scope, in the order given.

    Reverse chains that start with the same ``_has:Type:code`` become ONE subquery: the
    same Slot must satisfy all of them. The SAS SOS query needs exactly this:
    ``_has:Slot:schedule:start=ge…&_has:Slot:schedule:start=le…&_has:Slot:schedule:status=free``
    asks for Schedules with a free Slot in the window; read as independent ``_has`` terms it
    would also return a Schedule whose only free Slot is last month and whose only Slot in
    the window is booked. Forward chains stay independent, as R4 defines chaining
    (``subject.name=A&subject.birthdate=B`` may be satisfied by two different subjects).
    """
    items: list[Match | Link] = []
    shared: dict[Link, list[p.Criterion]] = {}
    fused = _fused(criteria, scope, now)
    for i, c in enumerate(criteria):
        if i in fused:
            items.append(fused[i])
        elif c.path and c.path[0].reverse:
            link = c.path[0]
            if link not in shared:
                shared[link] = []
                items.append(link)
            shared[link].append(replace(c, path=c.path[1:]))
        elif c.path:
            items.append(_forward(scope, c, now))
        else:
            items.append(_term(scope, c, now))
    return [
        _reverse(scope, item, shared[item], now) if isinstance(item, Link) else item
        for item in items
    ]


def _labelled(query: p.Query, now: datetime, hops: Hops | None) -> list[tuple[str, Match]]:
    """Top-level matches with the criteria they come from, as received."""
    scope = _Scope(R.c.pk, (query.res_type,), R, _Aliases(), hops)
    matches = _group(query.criteria, scope, now)
    labels: list[str] = []
    seen: dict[Link, int] = {}
    for c in query.criteria:
        text = f"{c.name}={c.raw}"
        if c.path and c.path[0].reverse:
            if c.path[0] in seen:
                labels[seen[c.path[0]]] += f" & {text}"
                continue
            seen[c.path[0]] = len(labels)
        labels.append(text)
    return [(f"{query.res_type}.{label}", m) for label, m in zip(labels, matches, strict=True)]


# -- order ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SortColumn:
    """One result-order key: its value per resource, direction and cursor type tag
    (``s`` text, ``d`` instant, ``n`` number, ``f`` float, ``i`` integer)."""

    name: str
    value: Any
    descending: bool
    kind: str
    nullable: bool


_KIND = {"string": "s", "token": "s", "uri": "s", "date": "d", "number": "n", "quantity": "n"}
# SQLite returns NUMERIC as a float that SQLAlchemy rounds into a Decimal; keep the float so
# a cursor holding it compares equal to the row it came from.
_NUMBER = Numeric().with_variant(Float(), "sqlite")


def sort_columns(query: p.Query) -> list[SortColumn]:
    """The ``_sort`` keys, then ``resources.pk`` (unique, unchanged by updates) last."""
    out: list[SortColumn] = []
    for key in query.sort:
        param, desc = key.param, key.descending
        name = f"{'-' if desc else ''}{param.code}"
        if param.code in _ROW_CODES:
            column = R.c.res_id if param.code == "_id" else R.c.last_updated
            kind = "s" if param.code == "_id" else "d"
            out.append(SortColumn(name, column, desc, kind, nullable=False))
            continue
        if param.type == "special":  # near: by distance from the point searched
            out.append(SortColumn(name, _distance(query, param.code), desc, "f", nullable=True))
            continue
        # Several values: ascending sorts by the smallest, descending by the largest.
        table = schema.INDEX_TABLES[param.type].alias()
        column_name = {"string": "norm", "token": "code", "date": "low"}.get(param.type, "value")
        column = table.c.high if param.type == "date" and desc else table.c[column_name]
        pick = func.max(column) if desc else func.min(column)
        value: Any = (
            select(pick)
            .where(table.c.res_pk == R.c.pk, table.c.param == param.code)
            .scalar_subquery()
        )
        if _KIND[param.type] == "n":
            value = type_coerce(value, _NUMBER)
        out.append(SortColumn(name, value, desc, _KIND[param.type], nullable=True))
    out.append(SortColumn("pk", R.c.pk, False, "i", nullable=False))
    return out


def _distance(query: p.Query, code: str) -> Any:
    """``_sort=near``: the haversine from the first ``near`` value of the query."""
    point = next(
        (
            v
            for c in query.criteria
            if c.param.code == code and not c.path
            for v in c.values
            if isinstance(v, p.NearValue)
        ),
        None,
    )
    if point is None:
        raise errors.incorrect(
            f"_sort={code} needs a {code}=latitude|longitude|distance criterion",
            expression=["_sort"],
        )
    table = schema.idx_geo.alias()
    key = geo.distance_order(
        table.c.latitude, table.c.longitude, point.latitude, point.longitude, point.distance_km
    )
    return (
        select(func.min(key)).where(table.c.res_pk == R.c.pk, table.c.param == code)
    ).scalar_subquery()


def order_by(columns: Sequence[SortColumn], values: Sequence[Any] | None = None) -> list[Any]:
    """ORDER BY terms, missing values last (``values``: the columns to order, if not the
    sort columns' own expressions)."""
    out = []
    for i, s in enumerate(columns):
        value = values[i] if values is not None else s.value
        term = value.desc() if s.descending else value.asc()
        out.append(term.nulls_last() if s.nullable else term)
    return out


def _order_text(query: p.Query) -> str:
    text = ", ".join(s.name for s in sort_columns(query))
    return text if query.sort else f"{text} (creation order)"


# -- statements ---------------------------------------------------------------------------


def conditions(
    query: p.Query, *, now: datetime | None = None, hops: Hops | None = None
) -> list[ColumnElement[bool]]:
    """The WHERE conditions (ANDed) selecting the query's matches in ``resources``; chains
    read through ``hops`` (None: every row). The matches' own rows are the caller's to
    limit (``session.visible``)."""
    moment = now or fhirtime.utcnow()
    base = [R.c.res_type == query.res_type, R.c.deleted == false()]
    return base + _sqls([m for _, m in _labelled(query, moment, hops)])


def statement(
    query: p.Query,
    *,
    now: datetime | None = None,
    columns: Sequence[Any] | None = None,
    hops: Hops | None = None,
) -> AnySelect:
    """Matches in result order, ``_offset`` and ``_count`` applied (default columns: pk,
    res_id, last_updated). Without ``_sort`` the order is creation order (``pk``)."""
    cols = list(columns) if columns is not None else [R.c.pk, R.c.res_id, R.c.last_updated]
    where = conditions(query, now=now, hops=hops)
    stmt = select(*cols).where(*where).order_by(*order_by(sort_columns(query)))
    if query.offset:
        stmt = stmt.offset(query.offset)
    if query.count is not None:
        stmt = stmt.limit(query.count)
    return stmt


def count_statement(
    query: p.Query,
    *,
    now: datetime | None = None,
    only: ColumnElement[bool] | None = None,
    hops: Hops | None = None,
) -> AnySelect:
    """The number of matches (``_count`` and ``_offset`` ignored); ``only``: the rows of
    ``resources`` the caller may see (None: all)."""
    stmt = select(func.count()).select_from(R).where(*conditions(query, now=now, hops=hops))
    return stmt if only is None else stmt.where(only)


def explain(query: p.Query, *, now: datetime | None = None, hops: Hops | None = None) -> str:
    """The plan in words: one line per criterion (a ``_has`` group on one line), then
    the order and window."""
    moment = now or fhirtime.utcnow()
    lines = [f"{label} -> {m.text}" for label, m in _labelled(query, moment, hops)]
    window = f", offset {query.offset}" if query.offset else ""
    window += f", limit {query.count}" if query.count is not None else ""
    lines.append(f"{query.res_type}: not deleted, order by {_order_text(query)}{window}")
    return "\n".join(lines)


# -- chains resolved first (run by ``run.prefetch_chains``) ------------------------------


def chain_targets(
    registry: Registry, c: p.Criterion, now: datetime, limit: int, hops: Hops | None = None
) -> tuple[AnySelect, SearchParameter] | None:
    """The statement listing (type, id) of what a forward chain's first link reaches, at
    most ``limit`` rows, and that link's parameter; None when the link is not a reference."""
    link = c.path[0]
    param = registry.get(link.sources[0], link.code)
    if param is None or param.type != "reference":
        return None
    aliases = _Aliases()
    target = aliases(R)
    rest = replace(c, path=c.path[1:])
    (inner,) = _group([rest], _Scope(target.c.pk, link.targets, target, aliases, hops), now)
    stmt = (
        select(target.c.res_type, target.c.res_id)
        .where(_in(target.c.res_type, link.targets), target.c.deleted == false(), inner.sql)
        .limit(limit)
    )
    seen = hops(link.targets, target) if hops is not None else None
    return (stmt if seen is None else stmt.where(seen)), param
