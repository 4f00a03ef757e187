"""Ingesting an unchanged feed keeps the availability cache warm: the SAS slot search is
answered from memory with no stale agenda; a changed feed is noticed (SQLite, PostgreSQL)."""

from __future__ import annotations

from urllib.parse import parse_qsl

import orjson

from fhir_server.interactions.context import Context
from fhir_server.interactions.search import SearchRequest, search
from mappings import sas
from tests.ingest.conftest import run
from tests.ingest.simple_format import feed_json, person, slots

QUERY = (
    "schedule=Schedule/{sched}&start=ge2026-06-12T00:00:00.000+02:00"
    "&start=le2026-06-14T00:00:00.000+02:00&status=free"
)


async def free_slots(ctx: Context) -> int:
    text = QUERY.format(sched=sas.schedule_id("simple", "a", "cab"))
    req = SearchRequest("Slot", parse_qsl(text), "http://test/fhir", raw_query=text)
    return len(orjson.loads((await search(ctx, req)).body).get("entry", []))


async def test_an_unchanged_feed_keeps_the_cache_warm(ctx: Context) -> None:
    doc = feed_json([person("a", "10000000015", slots("2026-06-12", 5))])
    await run(ctx, doc)
    cache = ctx.search.availability
    assert cache is not None
    assert await free_slots(ctx) == 5
    fills, stale = cache.fills, cache.stale
    await run(ctx, doc)
    assert await free_slots(ctx) == 5
    assert (cache.fills, cache.stale) == (fills, stale)  # answered from memory, still valid
    assert cache.served >= 2
    await run(ctx, feed_json([person("a", "10000000015", slots("2026-06-12", 4))]))
    assert await free_slots(ctx) == 4
    assert cache.stale == stale + 1  # the removal moved the Schedule's counter
