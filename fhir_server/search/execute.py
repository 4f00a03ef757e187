"""The one way a search runs: a query string in, a ``Page`` of stored resources out.

https://hl7.org/fhir/R4/search.html. ``Searcher.execute`` decides how each search is
answered, in this order:

1. a ``Shortcut`` when one is wired (``availability``: ``fhir_server.availability``'s agendas
   for the SAS slot search as sent, the SAS chain ``schedule.actor:Practitioner.identifier``
   answered from cached links); search never imports it, app.py wires it in;
2. otherwise forward chains are resolved first (``query.run.prefetch_chains``), and the
   cache is asked again when that turned the search into its shape;
3. otherwise SQL: a keyset page (``query.cursor``), ``total`` when asked, then the
   ``_include``/``_revinclude`` resources (``query.include``).

What the session's caller may see (``session.visible``, ``storage.port``) limits the page,
the count and the included resources; the cache applies the same scope
(``session.scope``) to its cached slot labels, and steps aside only for a scope limited to
an owner's rows (vendors: not the SAS search).

The caller renders the page (``interactions/search.py``): which answer path ran never shows
in the result.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol
from zoneinfo import ZoneInfo

from fhir_server.core import errors, fhirtime
from fhir_server.search.query import cursor, include, plan, run
from fhir_server.search.query import parse as p
from fhir_server.search.registry.parameters import Registry
from fhir_server.storage.port import ReadSession, Stored
from fhir_server.storage.rows import STORED_COLUMNS, stored_from_row


@dataclass(frozen=True)
class Page:
    """One page of a search: its matches, the resources they include, and how to go on.

    ``explanation`` is set (and nothing else ran) for ``_explain=true``: how the query
    would run, one line per step."""

    query: p.Query
    size: int  # the page size used (links repeat it)
    matches: list[Stored] = field(default_factory=list)
    included: list[Stored] = field(default_factory=list)
    total: int | None = None
    next_cursor: str | None = None
    previous_cursor: str | None = None
    explanation: tuple[str, ...] = ()


class Found(Protocol):
    """A shortcut's answer: every match (one page) and the included resources."""

    @property
    def matches(self) -> list[Stored]: ...

    @property
    def included(self) -> list[Stored]: ...


class Shortcut(Protocol):
    """Answers some searches without the SQL planner (the SAS slot search from per-process
    agendas, ``fhir_server.availability``), exactly as SQL would, or declines (None)."""

    def shape(self, query: p.Query, specs: Sequence[include.IncludeSpec]) -> object | None:
        """What ``answer`` needs of the search, or None when it cannot answer it."""
        ...

    async def answer(
        self, session: ReadSession, shape: object, limit: int, now: datetime
    ) -> Found | None:
        """The matches of ``shape`` the session's caller may see, or None: SQL answers."""
        ...


@dataclass(frozen=True)
class Searcher:
    """What searches need besides the session: built once (``app.py``), shared by requests.

    ``availability``: this process's shortcut for the SAS slot search; None: SQL only."""

    registry: Registry
    timezone: ZoneInfo
    default_count: int = 50
    max_count: int = 1000
    cursor_secret: bytes | None = None  # None: the built-in key (catches corruption only)
    availability: Shortcut | None = field(default=None, compare=False, hash=False)

    def parse(
        self, res_type: str, pairs: Sequence[tuple[str, str]], *, strict: bool = False
    ) -> tuple[p.Query, list[include.IncludeSpec]]:
        """The query and its include specs; with ``strict``, unknown parameters are a 400."""
        query = p.parse(self.registry, res_type, pairs, default_tz=self.timezone)
        if query.unknown and strict:
            raise errors.incorrect(
                f"unknown search parameter(s): {', '.join(query.unknown)}",
                code="not-supported",
                expression=list(query.unknown),
            )
        specs = [
            include.parse_include(self.registry, i.value, reverse=i.reverse, iterate=i.iterate)
            for i in query.include
        ]
        return query, specs

    async def execute(
        self,
        session: ReadSession,
        res_type: str,
        pairs: Sequence[tuple[str, str]],
        *,
        strict: bool = False,
        now: datetime | None = None,
    ) -> Page:
        """The page ``pairs`` (a query string as received) asks for."""
        query, specs = self.parse(res_type, pairs, strict=strict)
        size = self._page_size(query)
        if query.controls.get("_explain") in ("true", "1"):
            lines = plan.explain(query, now=now).splitlines() + [str(s) for s in specs]
            return Page(query, size, explanation=tuple(lines))
        moment = now or fhirtime.utcnow()
        # The SAS slot search from this process's agendas when it can: with the SAS chain
        # as sent, else once other chains are resolved to references.
        shape = self.availability.shape(query, specs) if self.availability is not None else None
        found = await self._from_agendas(session, shape, size, moment)
        if found is None:
            resolved = await run.prefetch_chains(session, self.registry, query, now=moment)
            if resolved is not query and shape is None:
                shape = (
                    self.availability.shape(resolved, specs)
                    if self.availability is not None
                    else None
                )
                found = await self._from_agendas(session, shape, size, moment)
            query = resolved
        if found is not None:
            total = None if query.total == "none" else len(found.matches)  # all in one page
            return Page(query, size, found.matches, found.included, total)
        return await self._sql_page(session, query, specs, pairs, size, moment)

    def _page_size(self, query: p.Query) -> int:
        if query.count is None:
            return self.default_count
        return min(query.count, self.max_count)

    async def _from_agendas(
        self,
        session: ReadSession,
        shape: object | None,
        size: int,
        now: datetime,
    ) -> Found | None:
        if self.availability is None or shape is None:
            return None
        return await self.availability.answer(session, shape, size, now)

    async def _sql_page(
        self,
        session: ReadSession,
        query: p.Query,
        specs: list[include.IncludeSpec],
        pairs: Sequence[tuple[str, str]],
        size: int,
        now: datetime,
    ) -> Page:
        """The page through SQL; ``query`` has its chains resolved already."""
        cursor_text = query.controls.get("_cursor")
        if query.summary == "count":
            return Page(query, size, total=await _count(session, query, now))
        # Keyset paging: the cursor carries the last row's sort values and key, so a page
        # never repeats or skips rows that were not themselves changed meanwhile.
        page = await cursor.search_page(
            session,
            query,
            pairs,
            cursor=cursor_text,
            limit=size,
            columns=STORED_COLUMNS,
            secret=self.cursor_secret,
            now=now,
        )
        matches = [stored_from_row(r) for r in page.rows]
        total: int | None = None
        if query.total != "none":
            first_and_last = cursor_text is None and page.next_cursor is None
            # everything fitted in the first page: no need to count
            total = len(matches) if first_and_last else await _count(session, query, now)
        included = await include.resolve(session, specs, matches, _has_filters(query, self))
        return Page(
            query,
            size,
            matches,
            included,
            total,
            next_cursor=page.next_cursor,
            previous_cursor=page.previous_cursor,
        )


async def _count(session: ReadSession, query: p.Query, now: datetime) -> int:
    only = session.visible(plan.R)
    hops = plan.hops_of(session)
    rows = await session.fetch(plan.count_statement(query, now=now, only=only, hops=hops))
    return int(rows[0][0])


def _has_filters(query: p.Query, searcher: Searcher) -> include.Filters:
    """``_has:Slot:schedule:x`` criteria also narrow ``_revinclude=Slot:schedule``.

    The SAS SOS search asks for Schedules having a free Slot in a window and revincludes
    their Slots: plain FHIR would include every Slot of those Schedules (busy ones, past
    ones), which is exactly the "shown but not available" problem SAS exists to avoid. So
    the revincluded resources must satisfy the same one-hop ``_has`` criteria.
    """
    grouped: dict[tuple[str, str], list[p.Criterion]] = {}
    for c in query.criteria:
        if len(c.path) == 1 and c.path[0].reverse and len(c.path[0].sources) == 1:
            link = c.path[0]
            plain = dataclasses.replace(c, name=c.param.code, path=(), res_types=())
            grouped.setdefault((link.sources[0], link.code), []).append(plain)
    out: include.Filters = {}
    for (source, code), criteria in grouped.items():
        param = searcher.registry.get(source, code)
        if param is not None:
            out[(source, code)] = include.Filter(param, criteria)
    return out
