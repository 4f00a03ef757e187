"""The puller on SQLite and PostgreSQL against real HTTP sources on loopback: a poll
ingests, an unchanged source (304) writes nothing, failures back off and are recorded
without touching other sources, leases keep a source to one puller at a time, and each
source is an Endpoint written only when its status changes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from fhir_server.core.caller import SYSTEM
from fhir_server.ingest.pull.config import PullSource
from fhir_server.ingest.pull.scheduler import Puller
from fhir_server.ingest.pull.state import engine_of, states_of
from fhir_server.interactions.context import Context
from fhir_server.storage.port import Store
from tests.ingest.pull.feeds import FeedServer, Route, feed_server
from tests.ingest.simple_format import NAME, feed_json, person, slots


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with feed_server() as s:
        yield s


def feed(count: int, key: str = "a", rpps: str = "10000000015") -> bytes:
    return orjson.dumps(feed_json([person(key, rpps, slots("2026-06-12", count))]))


def source(server: FeedServer, name: str, **extra: Any) -> PullSource:
    fields = {
        "name": name,
        "url": server.url(f"/{name}.json"),
        "format": NAME,
        "booking_url": "https://rdv.example.org/book",
        "timeout": 2,
        "retry": 10,
    }
    return PullSource.model_validate(fields | extra)


def puller(ctx: Context, sources: list[PullSource], owner: str = "p1") -> Puller:
    return Puller(ctx, states_of(ctx.store), sources, 1_000_000, owner=owner)


async def until(check: Callable[[], bool], seconds: float = 30) -> None:
    """Wait for something another task or thread does (bounded)."""
    async with asyncio.timeout(seconds):
        while not check():  # noqa: ASYNC110 (set by another thread: nothing to await)
            await asyncio.sleep(0.02)


async def endpoint(store: Store, name: str) -> tuple[str, int]:
    stored = await store.read("Endpoint", f"pull-{name}", SYSTEM)
    assert stored is not None
    return orjson.loads(stored.content)["status"], stored.version


async def slot_versions(store: Store) -> dict[str, int]:
    from sqlalchemy import text

    async with engine_of(store).connect() as conn:
        rows = await conn.execute(
            text("SELECT res_id, version FROM resources WHERE res_type = 'Slot' AND NOT deleted")
        )
        return {r[0]: r[1] for r in rows}


async def test_a_poll_ingests_then_an_unchanged_source_writes_nothing(
    ctx: Context, store: Store, server: FeedServer
) -> None:
    server.routes["/a.json"] = Route(feed(3), etag='"1"')
    p = puller(ctx, [source(server, "a")])
    await p.prepare()
    (first,) = await p.run_once()
    assert (first.status, first.slots, first.counts["created"]) == ("ingested", 3, 6)
    state = (await p.states.all())["a"]
    assert state.etag == '"1"' and state.slot_count == 3 and state.failures == 0
    assert state.lease_owner is None and state.last_success is not None
    assert state.next_due - state.last_success == timedelta(seconds=300)
    assert await endpoint(store, "a") == ("active", 1)
    before = await slot_versions(store)
    assert await p.run_once() == []  # not due yet
    (again,) = await p.run_once(force=True)
    assert again.status == "not-modified" and again.counts == {}
    assert server.of("/a.json")[1].headers["If-None-Match"] == '"1"'
    assert (await p.states.all())["a"].slot_count == 3  # a 304 keeps the count
    assert await slot_versions(store) == before
    assert await endpoint(store, "a") == ("active", 1)  # no new version per poll
    server.routes["/a.json"] = Route(feed(2), etag='"2"')
    (changed,) = await p.run_once(force=True)
    assert changed.counts["removed"] == 1 and changed.slots == 2
    assert (await p.states.all())["a"].etag == '"2"'


async def test_failures_back_off_are_recorded_and_spare_the_others(
    ctx: Context, store: Store, server: FeedServer
) -> None:
    server.routes["/good.json"] = Route(feed(1))
    server.routes["/bad.json"] = Route(b"oops", status=500)
    server.routes["/junk.json"] = Route(b"\xff\xfe not json")
    sources = [source(server, "good"), source(server, "bad"), source(server, "junk")]
    sources.append(source(server, "gone", url="http://127.0.0.1:9/gone.json"))
    p = puller(ctx, sources)
    await p.prepare()
    outcomes = {o.source: o for o in await p.run_once()}
    assert outcomes["good"].status == "ingested"
    assert outcomes["bad"].error is not None and "HTTP 500" in outcomes["bad"].error
    assert outcomes["gone"].error is not None and "ConnectError" in outcomes["gone"].error
    states = await p.states.all()
    assert states["good"].failures == 0 and states["good"].last_error is None
    junk = states["junk"]
    assert junk.failures == 1 and junk.last_error is not None and "junk.json" in junk.last_error
    bad = states["bad"]
    assert bad.last_error_at is not None and bad.last_success is None
    wait = (bad.next_due - bad.last_error_at).total_seconds()
    assert 5 <= wait <= 10  # retry (10 s) jittered down to half at most
    assert await endpoint(store, "bad") == ("error", 1)
    await p.run_once("bad", force=True)
    bad = (await p.states.all())["bad"]
    assert bad.failures == 2 and bad.last_error_at is not None
    assert 10 <= (bad.next_due - bad.last_error_at).total_seconds() <= 20  # doubled
    assert p.backoff(sources[1], 30) <= sources[1].max_backoff  # capped
    assert await endpoint(store, "bad") == ("error", 1)
    server.routes["/bad.json"] = Route(feed(1, "b", "10000000023"))
    (fixed,) = await p.run_once("bad", force=True)
    bad = (await p.states.all())["bad"]
    assert fixed.status == "ingested" and bad.failures == 0 and bad.last_success is not None
    assert bad.last_error is not None  # kept: when it last failed, and why
    assert await endpoint(store, "bad") == ("active", 2)


async def test_a_source_is_polled_by_one_puller_at_a_time(
    ctx: Context, store: Store, server: FeedServer
) -> None:
    names = ["s1", "s2", "s3", "s4"]
    for name in names:
        server.routes[f"/{name}.json"] = Route(feed(2, name), delay=0.2)
    sources = [source(server, n) for n in names]
    pullers = [puller(ctx, sources, owner=f"p{n}") for n in range(3)]
    await pullers[0].prepare()
    rounds = await asyncio.gather(*(p.run_once() for p in pullers))
    polled = sorted(o.source for outcomes in rounds for o in outcomes)
    assert polled == names
    assert all(server.count(f"/{n}.json") == 1 for n in names)


async def test_an_expired_lease_is_taken_over_and_the_late_holder_records_nothing(
    ctx: Context, server: FeedServer
) -> None:
    server.routes["/a.json"] = Route(feed(2))
    a = source(server, "a")
    dead, alive = puller(ctx, [a], owner="dead"), puller(ctx, [a], owner="alive")
    await dead.prepare()
    now = datetime.now(UTC)
    assert [s.name for s in await dead.states.claim({"a": 60}, "dead", now)] == ["a"]
    assert await alive.run_once() == []  # held
    later = now + timedelta(seconds=61)
    assert [s.name for s in await alive.states.claim({"a": 60}, "alive", later)] == ["a"]
    late = await dead.states.succeeded(
        "a", "dead", now=later, next_due=later, etag=None, last_modified=None, slot_count=9
    )
    assert not late  # the lease was lost: its outcome is not recorded
    state = (await alive.states.all())["a"]
    assert state.lease_owner == "alive" and state.slot_count is None


async def test_a_disabled_source_is_off_and_never_polled(
    ctx: Context, store: Store, server: FeedServer
) -> None:
    server.routes["/off.json"] = Route(feed(1))
    p = puller(ctx, [source(server, "off", enabled=False)])
    await p.prepare()
    assert await p.run_once(force=True) == []
    assert server.count("/off.json") == 0
    assert await endpoint(store, "off") == ("off", 1)
    await p.prepare()
    assert await endpoint(store, "off") == ("off", 1)
    again = puller(ctx, [source(server, "off")])  # enabled in the file again
    await again.prepare()
    (polled,) = await again.run_once()
    assert polled.status == "ingested" and await endpoint(store, "off") == ("active", 2)


async def test_a_source_removed_from_the_file_is_shown_off(
    ctx: Context, store: Store, server: FeedServer
) -> None:
    server.routes["/kept.json"] = Route(feed(1))
    server.routes["/dropped.json"] = Route(feed(1, key="b", rpps="10000000023"))
    first = puller(ctx, [source(server, "kept"), source(server, "dropped")])
    await first.prepare()
    await first.run_once()
    assert await endpoint(store, "dropped") == ("active", 1)
    later = puller(ctx, [source(server, "kept")])
    await later.prepare()
    assert await endpoint(store, "dropped") == ("off", 2)
    assert await endpoint(store, "kept") == ("active", 1)
    await later.prepare()  # already off: not written again
    assert await endpoint(store, "dropped") == ("off", 2)
    assert "dropped" in await later.states.all()  # its history is kept


async def test_the_background_loop_polls_and_stops(ctx: Context, server: FeedServer) -> None:
    server.routes["/a.json"] = Route(feed(1))
    p = puller(ctx, [source(server, "a")])
    p.tick = 0.05
    p.start()
    for _ in range(200):
        state = (await p.states.all()).get("a")
        if state is not None and state.last_success is not None:
            break
        await asyncio.sleep(0.05)
    await p.stop()
    assert server.count("/a.json") == 1
    assert (await p.states.all())["a"].last_success is not None


async def test_stopping_mid_poll_frees_the_source_records_nothing(
    ctx: Context, store: Store, server: FeedServer
) -> None:
    server.routes["/a.json"] = Route(feed(2), etag='"1"', delay=30)
    p = puller(ctx, [source(server, "a", timeout=60)])
    p.tick = 0.05
    p.start()
    for _ in range(200):
        if server.count("/a.json"):
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.1)
    assert (await p.states.all())["a"].lease_owner == "p1"
    await p.stop()
    state = (await p.states.all())["a"]
    assert state.lease_owner is None and state.etag is None and state.last_success is None
    assert state.next_due <= datetime.now(UTC)  # still due: the next process fetches it
    assert await slot_versions(store) == {}


async def test_a_sas_fhir_source_is_searched_paged_and_stored(
    ctx: Context, store: Store, server: FeedServer
) -> None:
    from tests.ingest.pull.test_fetch import sas_pages

    page1, page2 = sas_pages(server.base)
    server.routes["/fhir/Slot"] = Route(page1)
    server.routes["/fhir/page2"] = Route(page2)
    sas = source(
        server,
        "acme",
        url=server.url("/fhir"),
        format="sas-fhir",
        vendor="acme",
        rpps=["10000000015", "10000000023"],
    )
    p = puller(ctx, [sas])
    await p.prepare()
    (outcome,) = await p.run_once()
    assert outcome.error is None, outcome.error
    # the golden searchset: pr-1's 2 slots; pr-2 (a bad start) and pr-3 (no RPPS) refused
    assert outcome.requests == 2 and outcome.slots == 2
    assert outcome.counts["rejected"] == 4 and outcome.counts["created"] == 5
    assert len(await slot_versions(store)) == 2
    state = (await p.states.all())["acme"]
    assert state.slot_count == 2 and state.rejected == 4
    (again,) = await p.run_once(force=True)
    assert again.counts["created"] == again.counts["updated"] == 0  # a search: no 304
    assert server.count("/fhir/Slot") == 2


async def test_a_long_poll_renews_its_lease_page_by_page(
    ctx: Context, store: Store, server: FeedServer
) -> None:
    from tests.ingest.pull.test_fetch import sas_pages

    page1, page2 = sas_pages(server.base)
    first = orjson.loads(page1)
    first["link"][-1]["url"] = server.url("/fhir/p2")
    middle = {"resourceType": "Bundle", "type": "searchset", "link": []}
    server.routes["/fhir/Slot"] = Route(orjson.dumps(first), delay=0.5)
    for n in (2, 3):
        middle["link"] = [{"relation": "next", "url": server.url(f"/fhir/p{n + 1}")}]
        server.routes[f"/fhir/p{n}"] = Route(orjson.dumps(middle), delay=0.5)
    server.routes["/fhir/p4"] = Route(page2, delay=0.5)
    sas = source(
        server,
        "acme",
        url=server.url("/fhir"),
        format="sas-fhir",
        rpps=["10000000015"],
        timeout=1,
    )
    holder = puller(ctx, [sas], owner="holder")
    holder.lease_margin = 0.3  # a lease of 1.3 s; the poll takes 2 s and more
    other = puller(ctx, [sas], owner="other")
    await holder.prepare()
    polling = asyncio.create_task(holder.run_once())
    await until(lambda: server.count("/fhir/Slot") > 0)  # the holder has claimed it
    taken = []
    while not polling.done():
        taken += await other.run_once()
        await asyncio.sleep(0.1)
    (outcome,) = polling.result()
    assert taken == [] and outcome.error is None and outcome.requests == 4
    assert len(await slot_versions(store)) == 2


async def test_a_poll_whose_lease_was_taken_records_nothing(
    ctx: Context, store: Store, server: FeedServer
) -> None:
    server.routes["/a.json"] = Route(feed(2), delay=0.5)
    a = source(server, "a", timeout=1)
    p = puller(ctx, [a], owner="slow")
    p.lease_margin = 0.4  # the 0.5 s request eats more than half the margin: renewed after
    await p.prepare()
    polling = asyncio.create_task(p.run_once())
    await until(lambda: server.count("/a.json") > 0)
    later = datetime.now(UTC) + timedelta(hours=1)  # as if the lease had expired
    assert await p.states.claim({"a": 60}, "thief", later)
    (outcome,) = await polling
    assert outcome.error == "lease lost"
    state = (await p.states.all())["a"]
    assert state.lease_owner == "thief" and state.last_success is None
    assert state.last_error is None and state.failures == 0
    assert await slot_versions(store) == {}  # stopped before ingesting


async def test_keys_never_reach_logs_state_or_freshness(
    ctx: Context, store: Store, server: FeedServer
) -> None:
    from structlog.testing import capture_logs

    from fhir_server.ingest.pull.status import pull_status

    server.routes["/a.json"] = Route(b"", status=401)
    a = source(server, "a", url=server.url("/a.json?token=Q-SECRET"), headers={"X-Key": "H-SECRET"})
    p = puller(ctx, [a])
    await p.prepare()
    with capture_logs() as logs:
        (outcome,) = await p.run_once()
    assert outcome.error is not None and "HTTP 401" in outcome.error
    assert server.of("/a.json")[0].headers["X-Key"] == "H-SECRET"  # sent, never shown
    stored = await store.read("Endpoint", "pull-a", SYSTEM)
    assert stored is not None
    states = await p.states.all()
    shown = [
        repr(logs),
        repr(states),
        stored.content.decode(),
        orjson.dumps(pull_status([a], states)).decode(),
    ]
    assert not [text for text in shown if "SECRET" in text]
