"""The availability cache answers the SAS slot search exactly as the SQL search does.

Random agendas and random searches of the served shape, on SQLite and PostgreSQL: the
bundle from a context with a cache must be the bundle from one without (entries in the
same order, same bytes but the answer's time), on
a cold cache, a warm one, and after random writes made elsewhere (the cache object is
never told about them: only the change counters in the database are).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson
import pytest

from fhir_server.availability import agendas
from fhir_server.availability import answer as availability
from fhir_server.availability.search import AvailabilitySearch
from fhir_server.core.fhirtime import PARIS
from fhir_server.interactions import delete, update
from fhir_server.interactions.context import Context
from fhir_server.interactions.search import SearchRequest, search
from fhir_server.search.execute import Searcher
from fhir_server.search.indexing.reindex import reindex
from fhir_server.search.query import include, parse
from fhir_server.search.registry.parameters import default_registry
from fhir_server.storage import schema
from fhir_server.storage.port import Store

RPPS = "urn:oid:1.2.250.1.71.4.2.1"
BASE = "http://test/fhir"
DAY = datetime(2024, 6, 3, 6, 0, tzinfo=UTC)  # 08:00 in Paris
SCHEDULES = [f"s{n}" for n in range(6)]
STATUSES = ["free", "busy", "busy-unavailable"]
PREFIXES = ["", "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"]
VALUES = [
    "2024-06-03T09:00:00",
    "2024-06-03T09:00:00.000+02:00",
    "2024-06-03T07:30:00Z",
    "2024-06-03T10:15",
    "2024-06-03",
    "2024-06-04",
    "2024-06",
]


def contexts(store: Store, slots: int = 1_000_000) -> tuple[Context, Context]:
    """(without cache, with cache) over the same store. The generated agendas reference
    resources they do not create (Location/nowhere...): no referential integrity."""
    registry = default_registry()
    plain = Context(store=store, registry=registry, timezone=PARIS, referential_integrity=False)
    cached = Context(
        store=store,
        registry=registry,
        timezone=PARIS,
        searcher=Searcher(registry, PARIS, availability=AvailabilitySearch(slots)),
        referential_integrity=False,
    )
    return plain, cached


def practitioner(n: int) -> dict[str, Any]:
    return {
        "resourceType": "Practitioner",
        "id": f"p{n}",
        "identifier": [{"system": RPPS, "value": f"81000000000{n}"}],
    }


def schedule(rng: random.Random, sid: str) -> dict[str, Any]:
    actors = [{"reference": f"Practitioner/p{rng.randrange(4)}"}]
    if rng.random() < 0.4:
        actors.append({"reference": f"Practitioner/p{rng.randrange(4)}"})
    if rng.random() < 0.2:
        actors.append({"reference": "https://elsewhere/Practitioner/p1"})
    if rng.random() < 0.2:
        actors.append({"reference": "Location/nowhere"})
    return {"resourceType": "Schedule", "id": sid, "actor": actors}


def slot(rng: random.Random, n: int) -> dict[str, Any]:
    start = DAY + timedelta(minutes=15 * rng.randrange(-8, 200))
    if rng.random() < 0.2:
        start += timedelta(milliseconds=rng.choice([1, 999]))
    offset = rng.choice(["Z", "+02:00"])
    shown = start if offset == "Z" else start + timedelta(hours=2)
    text = shown.strftime("%Y-%m-%dT%H:%M:%S") + (
        f".{shown.microsecond // 1000:03d}" if shown.microsecond else ""
    )
    target = rng.choice(
        [f"Schedule/{s}" for s in SCHEDULES] + ["Schedule/missing", "https://elsewhere/Schedule/s1"]
    )
    return {
        "resourceType": "Slot",
        "id": f"slot{n}",
        "schedule": {"reference": target},
        "status": rng.choice(STATUSES),
        "start": text + offset,
        "end": (shown + timedelta(minutes=15)).strftime("%Y-%m-%dT%H:%M:%S") + offset,
    }


async def put(ctx: Context, resource: dict[str, Any]) -> None:
    await update.update(ctx, resource["resourceType"], resource["id"], resource)


def query(rng: random.Random) -> str:
    pairs: list[tuple[str, str]] = []
    if rng.random() < 0.5:
        chosen = rng.sample([*SCHEDULES, "missing"], rng.randint(1, 4))
        pairs.append(("schedule", ",".join(f"Schedule/{s}" for s in chosen)))
    else:
        chosen = rng.sample(range(5), rng.randint(1, 3))
        name = "schedule.actor:Practitioner.identifier"
        pairs.append((name, ", ".join(f"{RPPS}|81000000000{n}" for n in chosen)))
    for _ in range(rng.randint(1, 2)):
        values = [rng.choice(PREFIXES) + rng.choice(VALUES) for _ in range(rng.randint(1, 2))]
        pairs.append(("start", ",".join(values)))
    if rng.random() < 0.8:
        pairs.append(("status", rng.choice(["free", "free,busy", "|free", "busy-unavailable"])))
    if rng.random() < 0.8:
        pairs.append(("_include", "Slot:schedule"))
    if rng.random() < 0.7:
        pairs.append(
            ("_include:iterate", rng.choice(["Schedule:actor", "Schedule:actor:Practitioner"]))
        )
    if rng.random() < 0.1:
        pairs.append(("_count", "3"))
    if rng.random() < 0.1:
        pairs.append(("_total", "none"))
    rng.shuffle(pairs)
    return urlencode(pairs)


async def answer(ctx: Context, text: str) -> bytes:
    """The bundle's bytes, but for its ``meta.lastUpdated`` (the time of the answer)."""
    req = SearchRequest("Slot", parse_qsl(text, keep_blank_values=True), BASE, raw_query=text)
    bundle = orjson.loads((await search(ctx, req)).body)
    bundle.pop("meta", None)
    return orjson.dumps(bundle)


async def same_answers(plain: Context, cached: Context, queries: list[str]) -> None:
    wrong = []
    for text in queries:
        expected, got = await answer(plain, text), await answer(cached, text)
        if got != expected:
            wrong.append(f"Slot?{text}\n  sql:   {expected[:300]!r}\n  cache: {got[:300]!r}")
    assert not wrong, f"{len(wrong)} of {len(queries)} differ:\n" + "\n".join(wrong[:5])


async def load(ctx: Context, rng: random.Random, slots: int = 120) -> None:
    for n in range(4):
        await put(ctx, practitioner(n))
    for sid in SCHEDULES[:-1]:  # s5 never exists: its slots point nowhere
        await put(ctx, schedule(rng, sid))
    for n in range(slots):
        await put(ctx, slot(rng, n))


async def change(ctx: Context, rng: random.Random, slots: int) -> str:
    """One random write, as another process would make it."""
    kind = rng.choice(["status", "start", "move", "delete", "create", "schedule", "gone"])
    n = rng.randrange(slots)
    if kind == "delete":
        await delete.delete(ctx, "Slot", f"slot{n}")
    elif kind == "schedule":
        await put(ctx, schedule(rng, rng.choice(SCHEDULES)))
    elif kind == "gone":
        await delete.delete(ctx, rng.choice(["Schedule", "Practitioner"]), f"s{rng.randrange(5)}")
    else:
        fresh = slot(rng, n if kind != "create" else slots + rng.randrange(1000))
        await put(ctx, fresh)
    return kind


@pytest.mark.parametrize("seed", [1, 2])
async def test_cache_answers_exactly_what_sql_answers(store: Store, seed: int) -> None:
    rng = random.Random(seed)
    plain, cached = contexts(store)
    await load(plain, rng)
    queries = [query(rng) for _ in range(60)]
    await same_answers(plain, cached, queries)  # cold
    await same_answers(plain, cached, queries)  # warm
    cache = cached.search.availability
    assert cache is not None
    assert cache.served >= 60, (cache.served, cache.declined)  # the cache did answer
    for _ in range(25):
        await change(plain, rng, 120)
        await same_answers(plain, cached, rng.sample(queries, 8))
    assert cache.stale > 0  # writes elsewhere were noticed through the counters


async def test_sas_query_with_instants_as_sent(store: Store) -> None:
    """The PS query as the SAS platform sends it, answered from the cache."""
    rng = random.Random(7)
    plain, cached = contexts(store)
    await load(plain, rng)
    text = (
        "_include=Slot:schedule&_include:iterate=Schedule:actor"
        "&start=ge2024-06-03T08:00:00.000+02:00&start=le2024-06-05T08:00:00.000 02:00"
        f"&schedule.actor:Practitioner.identifier={RPPS}|810000000000, {RPPS}|810000000001"
        "&status=free"
    )
    await same_answers(plain, cached, [text])
    body = orjson.loads(await answer(cached, text))
    modes = {e["search"]["mode"] for e in body["entry"]}
    assert body["total"] > 0 and modes == {"match", "include"}
    cache = cached.search.availability
    assert cache is not None and cache.served == 2
    # the chain was resolved from the cache, not by the SQL prefetch
    assert f"Practitioner?identifier={RPPS}|810000000001" in cache
    assert "Schedule?actor=Practitioner/p1" in cache


async def test_more_matches_than_a_page_go_to_sql_paging(store: Store) -> None:
    rng = random.Random(3)
    plain, cached = contexts(store)
    await load(plain, rng)
    text = "schedule=Schedule/s0,Schedule/s1,Schedule/s2&start=ge2024-06-01&_count=2"
    await same_answers(plain, cached, [text])
    body = orjson.loads(await answer(cached, text))
    assert [link["relation"] for link in body["link"]] == ["self", "next"]
    assert cached.search.availability is not None and cached.search.availability.declined == 2


async def test_a_cache_too_small_for_the_search_lets_sql_answer(store: Store) -> None:
    rng = random.Random(4)
    plain, cached = contexts(store, slots=10)
    await load(plain, rng)
    text = "schedule=Schedule/s0,Schedule/s1,Schedule/s2&start=ge2024-06-01&status=free"
    await same_answers(plain, cached, [text, text])
    cache = cached.search.availability
    assert cache is not None and cache.declined == 2 and cache.served == 0
    assert len(cache) <= 10


async def test_other_searches_are_not_served(store: Store) -> None:
    rng = random.Random(5)
    plain, cached = contexts(store)
    await load(plain, rng)
    queries = [
        "schedule=Schedule/s0&status=free",  # no start: not fused in SQL either
        "schedule=s0&start=ge2024-06-01",  # a bare id matches any type
        "schedule=Schedule/s0&start=ge2024-06-01&_sort=start",
        "schedule=Schedule/s0&start=ge2024-06-01&_lastUpdated=gt2000",
        "schedule=Schedule/s0&start=ge2024-06-01&status:not=free",
        "schedule=Schedule/s0&start=ge2024-06-01&_include=Slot:*",
        "schedule=Schedule/s0&start=ge2024-06-01&_summary=count",
        "schedule=https://elsewhere/Schedule/s1&start=ge2024-06-01",
    ]
    await same_answers(plain, cached, queries)
    assert cached.search.availability is not None and cached.search.availability.served == 0


def test_shape_reads_the_resolved_chain() -> None:
    registry = default_registry()
    q = parse.parse(
        registry,
        "Slot",
        [("schedule", "Schedule/a,Schedule/b,Schedule/a"), ("start", "ge2024"), ("status", "free")],
        default_tz=PARIS,
    )
    specs = [include.parse_include(registry, "Schedule:actor", reverse=False, iterate=False)]
    shape = availability.shape_of(q, specs)
    assert shape is not None
    assert shape.schedules == ("a", "b")
    assert not shape.include_schedules and not shape.include_actors


async def test_every_write_path_moves_the_counters(store: Store) -> None:
    plain, _ = contexts(store)

    async def versions() -> dict[str, int]:
        async with store.reading() as session:
            rows = await session.fetch(schema.watch_versions.select())
        return {str(k): int(v) for k, v in rows}

    holder = f"Practitioner?identifier={RPPS}|810000000000"
    await put(plain, practitioner(0))
    assert await versions() == {holder: 1}
    await put(
        plain, {"resourceType": "Schedule", "id": "s0", "actor": [{"reference": "Practitioner/p0"}]}
    )
    assert await versions() == {holder: 1, "Schedule/s0": 1, "Schedule?actor=Practitioner/p0": 1}
    moved = {**slot(random.Random(6), 1), "schedule": {"reference": "Schedule/s0"}}
    await put(plain, moved)
    assert (await versions())["Schedule/s0"] == 2
    await put(plain, {**moved, "schedule": {"reference": "Schedule/s1"}})  # both schedules
    now = await versions()
    assert (now["Schedule/s0"], now["Schedule/s1"]) == (3, 1)
    await delete.delete(plain, "Slot", "slot1")
    assert (await versions())["Schedule/s1"] == 2
    before = await versions()
    await put(plain, {**moved, "schedule": {"reference": "https://elsewhere/Schedule/s0"}})
    assert await versions() == before  # not one of ours: no key
    other = {**practitioner(0), "identifier": [{"system": RPPS, "value": "810000000009"}]}
    await put(plain, other)  # the old and the new identifier
    now = await versions()
    assert now[holder] == 2 and now[f"Practitioner?identifier={RPPS}|810000000009"] == 1
    await delete.delete(plain, "Schedule", "s0")  # its own key and its actor's
    now = await versions()
    assert (now["Schedule/s0"], now["Schedule?actor=Practitioner/p0"]) == (4, 2)
    await reindex(store, plain.registry)  # rewrites the rows of every current resource
    assert (await versions())[holder] == 2  # p0 no longer holds it
    assert (await versions())[f"Practitioner?identifier={RPPS}|810000000009"] == 2


async def test_preload_reads_every_agenda_until_the_cache_is_full(store: Store) -> None:
    rng = random.Random(8)
    plain, cached = contexts(store)
    await load(plain, rng)
    cache = cached.search.availability
    assert cache is not None
    done = await agendas.preload(store, cache, batch=2)
    assert done.complete and done.schedules == 5  # s0..s4 (s5 was never created)
    fills = cache.fills
    text = "schedule=Schedule/s0,Schedule/s3&start=ge2024-06-03&status=free"
    chained = f"schedule.actor:Practitioner.identifier={RPPS}|810000000001&start=ge2024-06-03"
    await same_answers(plain, cached, [text, chained])
    assert cache.fills == fills and cache.served == 2  # nothing read but the answers

    _, small = contexts(store, slots=30)
    assert small.search.availability is not None
    partial = await agendas.preload(store, small.search.availability, batch=1)
    assert not partial.complete and 0 < partial.schedules < 5
