"""The availability cache as the searcher's ``Shortcut`` (``search/execute.py``): the SAS slot
search answered from this process's agendas when the caller's scope allows it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from fhir_server.availability import agendas
from fhir_server.availability import answer as cached
from fhir_server.search.query import parse as p
from fhir_server.search.query.include import IncludeSpec
from fhir_server.storage.port import ReadSession


class AvailabilitySearch(agendas.AvailabilityCache):
    def shape(self, query: p.Query, specs: Sequence[IncludeSpec]) -> cached.Shape | None:
        return cached.shape_of(query, specs)

    async def answer(
        self, session: ReadSession, shape: object, limit: int, now: datetime
    ) -> cached.Answer | None:
        assert isinstance(shape, cached.Shape)  # what ``shape`` returned
        scope = session.scope
        if scope.owner_only or not all(
            scope.whole_type(t) for t in (agendas.SCHEDULE, agendas.PRACTITIONER)
        ):
            return None  # the agendas know no owners: SQL applies what the caller may see
        if not scope.type_ok(agendas.SLOT):
            return None
        return await cached.answer(session, self, shape, limit, now, scope)
