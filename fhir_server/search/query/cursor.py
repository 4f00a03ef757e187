"""Keyset paging: pages that neither repeat nor skip a resource while others are written.

https://hl7.org/fhir/R4/http.html#paging. A page is the ``limit`` matches that follow (or,
for ``previous``, precede) a position in the result order: the ``_sort`` keys, then
``resources.pk``, which is unique and never changes when a resource is updated. The position
is the last (first) row's sort values and pk, so a page never depends on how many rows come
before it: resources created, deleted or moved meanwhile do not shift the others. A resource
that is not modified between two page reads is seen exactly once; one that is modified may
move (its sort values changed), new ones appear if they sort after the position.

The position travels as an opaque, url-safe cursor ``base64url(json) "." base64url(mac)``.
The MAC (HMAC-SHA256, truncated to 128 bits) covers the payload and a digest of the search
criteria and ``_sort``: a cursor altered by hand, truncated, or replayed on another search
is a 400, never a 500 or a silently wrong page. Pass ``secret`` (from the settings, shared
by every worker) to make cursors unforgeable; the built-in key only detects corruption,
which is enough for what a forged cursor could do: start a page anywhere in a result set the
client may read anyway.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import ColumnElement, and_, false, or_, select

from fhir_server.core import errors, fhirtime
from fhir_server.search.query import parse as p
from fhir_server.search.query import plan
from fhir_server.search.registry.parameters import CONTROL_PARAMETERS
from fhir_server.storage.port import ReadSession

_DEFAULT_SECRET = b"fhir-server search cursor v1"
MAX_CURSOR_LENGTH = 4096
_MAC_BYTES = 16


@dataclass(frozen=True)
class Page:
    """One page of matches. ``rows`` holds the ``columns`` asked of ``search_page`` (empty
    when none were), in page order like ``ids``."""

    ids: list[str]
    next_cursor: str | None
    query: p.Query
    previous_cursor: str | None = None
    rows: list[tuple[Any, ...]] = field(default_factory=list)


@dataclass(frozen=True)
class Position:
    """A place in the result order: the sort values then the pk of a row."""

    values: tuple[Any, ...]
    backward: bool = False  # the page wanted is the one before this place


# -- the cursor text ----------------------------------------------------------------------


PAGING_PARAMETERS = frozenset({"_count", "_offset", "_cursor"})


def without_paging(pairs: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """The query without what says which page to show: the search a cursor belongs to,
    and the base of the links to the next and previous pages."""
    return [(k, v) for k, v in pairs if k not in PAGING_PARAMETERS]


def binding(res_type: str, pairs: Sequence[tuple[str, str]]) -> bytes:
    """What a cursor belongs to: the type, the criteria and ``_sort`` (not ``_count``,
    ``_include``... which do not move the position)."""
    kept = sorted(
        (k, v) for k, v in pairs if k == "_sort" or k.partition(":")[0] not in CONTROL_PARAMETERS
    )
    return hashlib.sha256(json.dumps([res_type, kept]).encode()).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, bound: bytes, payload: bytes) -> bytes:
    return hmac.new(secret, bound + payload, hashlib.sha256).digest()[:_MAC_BYTES]


def _dump(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind == "d":
        return value.astimezone(UTC).isoformat()  # storage reads instants aware
    if kind == "n":
        return str(value)
    return value


def _load(value: Any, kind: str, nullable: bool) -> Any:
    if value is None:
        if not nullable:
            raise ValueError("missing value")
        return None
    if kind == "s" and isinstance(value, str):
        return value
    if kind == "i" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind == "d" and isinstance(value, str):
        when = datetime.fromisoformat(value)
        if when.tzinfo is None:
            raise ValueError("naive instant")
        return when.astimezone(UTC)
    if kind == "f" and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if kind == "n" and isinstance(value, str):
        number = Decimal(value)
        if not number.is_finite():
            raise ValueError("not a number")
        return number
    raise ValueError(f"not a {kind} value")


def encode(
    position: Position, columns: Sequence[plan.SortColumn], bound: bytes, secret: bytes
) -> str:
    values = [_dump(v, c.kind) for v, c in zip(position.values, columns, strict=True)]
    payload = json.dumps(["p" if position.backward else "n", values], separators=(",", ":"))
    data = payload.encode()
    return f"{_b64(data)}.{_b64(_mac(secret, bound, data))}"


def decode(
    cursor: str, columns: Sequence[plan.SortColumn], bound: bytes, secret: bytes
) -> Position:
    """The position in ``cursor``; a 400 if it was altered or belongs to another search."""

    def bad(why: str) -> errors.FhirError:
        error: errors.FhirError = errors.incorrect(
            f"invalid paging cursor: {why}", expression=["_cursor"]
        )
        return error

    head, dot, tail = cursor.partition(".")
    if len(cursor) > MAX_CURSOR_LENGTH or not dot or not head or not tail:
        raise bad("not a cursor of this server")
    try:
        data, mac = _unb64(head), _unb64(tail)
    except (binascii.Error, ValueError):
        raise bad("not a cursor of this server") from None
    if not hmac.compare_digest(mac, _mac(secret, bound, data)):
        raise bad("altered, or from another search (same criteria and _sort required)")
    try:
        direction, raw = json.loads(data)
        if direction not in ("n", "p") or len(raw) != len(columns):
            raise ValueError("wrong shape")
        values = tuple(_load(v, c.kind, c.nullable) for v, c in zip(raw, columns, strict=True))
    except (ValueError, TypeError, InvalidOperation):
        raise bad("malformed") from None
    return Position(values, backward=direction == "p")


# -- SQL ----------------------------------------------------------------------------------


def _beyond(
    columns: Sequence[plan.SortColumn], keys: Sequence[Any], position: Position
) -> ColumnElement[bool]:
    """Rows strictly after ``position`` in the page order (reversed for ``backward``):
    ``k1 > v1 OR (k1 = v1 AND k2 > v2) OR ...``, with missing values last going forward
    (so first going backward)."""
    alternatives: list[ColumnElement[bool]] = []
    same: list[ColumnElement[bool]] = []
    nulls_last = not position.backward
    for column, key, value in zip(columns, keys, position.values, strict=True):
        descending = column.descending != position.backward
        step: ColumnElement[bool] | None
        if value is None:
            step = None if nulls_last else key.is_not(None)
        else:
            step = key < value if descending else key > value
            if column.nullable and nulls_last:
                step = or_(step, key.is_(None))
        if step is not None:
            alternatives.append(and_(*same, step))
        same.append(key.is_(None) if value is None else key == value)
    return or_(*alternatives) if alternatives else false()


def page_statement(
    query: p.Query,
    *,
    position: Position | None,
    limit: int,
    columns: Sequence[Any] = (),
    now: datetime | None = None,
    only: ColumnElement[bool] | None = None,
    hops: plan.Hops | None = None,
) -> plan.AnySelect:
    """``limit`` matches after ``position``: the ``columns`` (of ``resources``), ``res_id``,
    then the sort values. Rows come in page order (reversed when going backward)."""
    sort = plan.sort_columns(query)
    wanted = [*columns, plan.R.c.res_id]
    inner = (
        select(*wanted, *(s.value.label(f"_k{i}") for i, s in enumerate(sort)))
        .where(*plan.conditions(query, now=now, hops=hops), *([] if only is None else [only]))
        .subquery("matches")
    )
    # By position: ``res_id`` may be asked for twice (then SQLAlchemy renames the copy).
    picked = list(inner.c)
    keys = picked[len(wanted) :]
    stmt = select(*picked[: len(wanted)], *keys)
    backward = position is not None and position.backward
    if position is not None:
        stmt = stmt.where(_beyond(sort, keys, position))
    order = []
    for s, key in zip(sort, keys, strict=True):
        term = key.desc() if s.descending != backward else key.asc()
        if s.nullable:
            term = term.nulls_first() if backward else term.nulls_last()
        order.append(term)
    return stmt.order_by(*order).limit(limit)


async def search_page(
    session: ReadSession,
    query: p.Query,
    pairs: Sequence[tuple[str, str]],
    *,
    cursor: str | None,
    limit: int,
    columns: Sequence[Any] = (),
    secret: bytes | None = None,
    now: datetime | None = None,
) -> Page:
    """The page after (or before) ``cursor``, or the first page, of ``query`` (parsed from
    ``pairs``, its chains already resolved by ``run.prefetch_chains``). ``pairs`` bind the
    cursor to its search; ``limit`` is the page size (``_count``/``_offset`` are the
    caller's to apply)."""
    res_type = query.res_type
    sort = plan.sort_columns(query)
    key, bound = secret or _DEFAULT_SECRET, binding(res_type, pairs)
    position = decode(cursor, sort, bound, key) if cursor else None
    if limit <= 0:
        return Page([], None, query)
    stmt = page_statement(
        query,
        position=position,
        limit=limit + 1,
        columns=columns,
        now=now or fhirtime.utcnow(),
        only=session.visible(plan.R),  # the caller's rows only (storage.port, ``visible``)
        hops=plan.hops_of(session),  # and their chains read through the caller's rows
    )
    rows = [tuple(r) for r in await session.fetch(stmt)]
    more, rows = len(rows) > limit, rows[:limit]
    backward = position is not None and position.backward
    if backward:
        rows.reverse()
    width = len(columns)

    def at(row: tuple[Any, ...], back: bool) -> str:
        return encode(Position(row[width + 1 :], back), sort, bound, key)

    # An empty page (everything after the position went meanwhile) has no links on.
    next_cursor = previous_cursor = None
    if rows and (more or backward):
        next_cursor = at(rows[-1], False)
    if rows and position is not None and (more or not backward):
        previous_cursor = at(rows[0], True)
    return Page(
        ids=[r[width] for r in rows],
        next_cursor=next_cursor,
        query=query,
        previous_cursor=previous_cursor,
        rows=[r[:width] for r in rows] if columns else [],
    )
