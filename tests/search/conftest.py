"""Search fixtures: a registry, and a helper that writes resources and runs searches.

The ``store`` fixture is the shared one (``tests/conftest.py``): every plan test runs on
SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import pytest

import profiles
from fhir_server.core.fhirtime import PARIS
from fhir_server.search.indexing.indexer import index_resource
from fhir_server.search.query import parse, plan, run
from fhir_server.search.registry.parameters import Registry, SearchParameter
from fhir_server.storage.port import Store, Stored

T0 = datetime(2024, 6, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
def registry() -> Registry:
    """The R4 parameters plus two test ones: the served types have no number or quantity."""
    reg = Registry(profiles.r4_search_parameters())
    reg.add("Appointment", SearchParameter("minutes", "number", "Appointment.minutesDuration"))
    reg.add(
        "Appointment",
        SearchParameter("weight", "quantity", "Appointment.extension.valueQuantity"),
    )
    return reg


class Searcher:
    def __init__(self, store: Store, registry: Registry) -> None:
        self.store, self.registry = store, registry
        self.clock = T0

    async def put(self, *resources: dict[str, Any], deleted: bool = False) -> None:
        """Write resources, one second apart (so _lastUpdated order is the writing order)."""
        async with self.store.writing() as session:
            for resource in resources:
                self.clock += timedelta(seconds=1)
                stored = Stored(
                    resource["resourceType"],
                    resource["id"],
                    1,
                    self.clock,
                    deleted,
                    json.dumps(resource).encode(),
                    "DELETE" if deleted else "POST",
                )
                rows = {} if deleted else index_resource(self.registry, resource)
                await session.put(stored, rows, None)

    async def ids(self, res_type: str, query: str, *, now: datetime | None = None) -> list[str]:
        pairs = parse_qsl(query, keep_blank_values=True)
        async with self.store.reading() as session:
            ids, _ = await run.search_ids(
                session, self.registry, res_type, pairs, default_tz=PARIS, now=now
            )
        return ids

    async def count(self, res_type: str, query: str) -> int:
        async with self.store.reading() as session:
            query = parse.parse(self.registry, res_type, parse_qsl(query), default_tz=PARIS)
            query = await run.prefetch_chains(session, self.registry, query)
            rows = await session.fetch(plan.count_statement(query))
            return int(rows[0][0])

    async def check(self, res_type: str, cases: list[tuple[str, set[str]]]) -> None:
        """Run every query and report all mismatches at once."""
        wrong = []
        for query, expected in cases:
            got = set(await self.ids(res_type, query))
            if got != expected:
                wrong.append(f"{res_type}?{query}: got {sorted(got)}, expected {sorted(expected)}")
        assert not wrong, "\n".join(wrong)


@pytest.fixture
def searcher(store: Store, registry: Registry) -> Searcher:
    return Searcher(store, registry)
