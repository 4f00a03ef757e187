"""Reconciliation of a practitioner's feed, on SQLite and PostgreSQL: created, updated,
removed, unchanged exactly; nothing written twice; booked slots kept; rejected feeds write
nothing; event feeds only upsert."""

from __future__ import annotations

from typing import Any

import orjson

from fhir_server.core.caller import Caller
from fhir_server.interactions import update
from fhir_server.interactions.context import Context
from fhir_server.storage import schema
from fhir_server.storage.port import Store
from mappings import sas
from tests.ingest.conftest import run
from tests.ingest.simple_format import feed_json, person, slots

RPPS_A, RPPS_B = "10000000015", "10000000023"


def slot_id(key: str, practitioner: str = "a") -> str:
    return sas.stable_id("simple", "slot", f"{practitioner}-{key}")


async def stored(store: Store, res_type: str, res_id: str) -> Any:
    found = await store.read(res_type, res_id)
    return None if found is None or found.deleted else found


async def history_size(store: Store) -> int:
    async with store.reading() as session:
        return len(await session.fetch(schema.history.select()))


async def watch(store: Store) -> dict[str, int]:
    async with store.reading() as session:
        rows = await session.fetch(schema.watch_versions.select())
    return {str(k): int(v) for k, v in rows}


async def test_first_feed_creates_and_the_same_feed_writes_nothing(
    ctx: Context, store: Store
) -> None:
    doc = feed_json([person("a", RPPS_A, slots("2026-06-12", 4))])
    first = await run(ctx, doc)
    assert first.totals() == dict(created=7, updated=0, removed=0, unchanged=0, rejected=0)
    before = (await history_size(store), await watch(store))
    slot = await stored(store, "Slot", slot_id("2026-06-12-0"))
    second = await run(ctx, doc)
    assert second.totals() == dict(created=0, updated=0, removed=0, unchanged=7, rejected=0)
    assert (await history_size(store), await watch(store)) == before  # no version, no counter
    again = await stored(store, "Slot", slot_id("2026-06-12-0"))
    assert (again.version, again.last_updated) == (slot.version, slot.last_updated)


async def test_changed_slots_are_updated_vanished_ones_removed(ctx: Context, store: Store) -> None:
    four = slots("2026-06-12", 4)
    await run(ctx, feed_json([person("a", RPPS_A, four)]))
    changed = [dict(four[0], end="2026-06-12T08:30:00"), four[1], four[2]]  # 3 gone, 0 longer
    outside = slots("2026-06-20", 1)  # after the window: not the feed's business
    await run(ctx, feed_json([person("a", RPPS_A, outside)], window=("2026-06-20", "2026-06-21")))
    report = await run(ctx, feed_json([person("a", RPPS_A, changed)]))
    assert report.totals() == dict(created=0, updated=1, removed=1, unchanged=5, rejected=0)
    assert await stored(store, "Slot", slot_id("2026-06-12-3")) is None
    assert await stored(store, "Slot", slot_id("2026-06-20-0")) is not None
    first = await stored(store, "Slot", slot_id("2026-06-12-0"))
    assert orjson.loads(first.content)["end"] == "2026-06-12T08:30:00.000+02:00"


async def test_vanished_slots_marked_busy_unavailable_when_configured(
    ctx: Context, store: Store
) -> None:
    two = slots("2026-06-12", 2)
    await run(ctx, feed_json([person("a", RPPS_A, two)]))
    report = await run(ctx, feed_json([person("a", RPPS_A, two[:1])]), vanished="busy")
    assert report.totals()["removed"] == 1, report.feeds
    gone = await stored(store, "Slot", slot_id("2026-06-12-1"))
    assert orjson.loads(gone.content)["status"] == "busy-unavailable"
    again = await run(ctx, feed_json([person("a", RPPS_A, two[:1])]), vanished="busy")
    assert again.totals()["removed"] == 0  # already marked: not written again
    back = await run(ctx, feed_json([person("a", RPPS_A, two)]), vanished="busy")
    assert back.totals()["updated"] == 1  # the vendor offers it again: free
    assert (
        orjson.loads((await stored(store, "Slot", slot_id("2026-06-12-1"))).content)["status"]
        == "free"
    )


async def test_a_booked_slot_is_never_freed_nor_removed(ctx: Context, store: Store) -> None:
    three = slots("2026-06-12", 3)
    await run(ctx, feed_json([person("a", RPPS_A, three)]))
    booked = orjson.loads((await stored(store, "Slot", slot_id("2026-06-12-0"))).content)
    booked["status"] = "busy"  # a booking through the API (the SAS profile is for free slots)
    booked["meta"] = {"security": booked["meta"]["security"]}
    await update.update(ctx, "Slot", booked["id"], booked)
    appointment = {
        "resourceType": "Appointment",
        "id": "apt-1",
        "status": "booked",
        "start": "2026-06-12T08:15:00.000+02:00",
        "end": "2026-06-12T08:30:00.000+02:00",
        "slot": [{"reference": f"Slot/{slot_id('2026-06-12-1')}"}],
        "participant": [{"status": "accepted", "actor": {"display": "patient"}}],
    }
    await update.update(ctx, "Appointment", "apt-1", appointment)
    # the vendor still says slot 0 is free and no longer lists slot 1 nor 2
    report = await run(ctx, feed_json([person("a", RPPS_A, three[:1])]))
    assert report.totals() == dict(created=0, updated=0, removed=1, unchanged=4, rejected=0)
    slot0 = await stored(store, "Slot", slot_id("2026-06-12-0"))
    assert orjson.loads(slot0.content)["status"] == "busy"
    assert await stored(store, "Slot", slot_id("2026-06-12-1")) is not None  # appointed
    assert await stored(store, "Slot", slot_id("2026-06-12-2")) is None


async def test_a_rejected_practitioner_writes_nothing_and_stops_no_one(
    ctx: Context, store: Store
) -> None:
    bad = person("b", RPPS_B, [*slots("2026-06-12", 2), {"key": "x", "start": "not a date"}])
    doc = feed_json([person("a", RPPS_A, slots("2026-06-12", 2)), bad, person("c", None, [])])
    report = await run(ctx, doc)
    by_key = {f.key: f for f in report.feeds}
    assert by_key["a"].created == 5 and by_key["a"].rejected == 0
    assert by_key["b"].rejected == 5 and by_key["b"].created == 0
    assert by_key["c"].rejected == 1 and by_key["c"].created == 0  # no RPPS: nothing mapped
    assert [f.location for f in by_key["b"].findings] == ["feed.json#/practitioners/1/slots/2"]
    assert by_key["c"].findings[0].code == "not-found"
    assert await stored(store, "Practitioner", sas.practitioner_id("simple", "b")) is None
    assert await stored(store, "Slot", slot_id("2026-06-12-0")) is not None  # a's


async def test_a_store_refusal_rolls_the_whole_feed_back(ctx: Context, store: Store) -> None:
    await run(ctx, feed_json([person("a", RPPS_A, slots("2026-06-12", 2))]))
    before = await history_size(store)
    # a slot type outside TRE-R314: the SAS profile refuses it (422) after others were written
    odd = [*slots("2026-06-13", 2), dict(slots("2026-06-13", 3)[2], types=["NOPE"])]
    doc = feed_json([person("a", RPPS_A, odd)], window=("2026-06-13", "2026-06-14"))
    report = await run(ctx, doc)
    assert report.totals()["rejected"] == 6 and report.totals()["created"] == 0
    assert report.feeds[0].findings, "the store's reason is reported"
    assert await history_size(store) == before


async def test_an_event_feed_only_upserts(ctx: Context, store: Store) -> None:
    two = slots("2026-06-12", 2)
    await run(ctx, feed_json([person("a", RPPS_A, two)]))
    report = await run(ctx, feed_json([person("a", RPPS_A, two[1:])], window=None))
    assert report.totals() == dict(created=0, updated=0, removed=0, unchanged=4, rejected=0)
    assert await stored(store, "Slot", slot_id("2026-06-12-0")) is not None


async def test_writes_are_the_callers_a_vendor_cannot_take_anothers(
    ctx: Context, store: Store
) -> None:
    doc = feed_json([person("a", RPPS_A, slots("2026-06-12", 2))])
    first = ctx.acting_for(Caller(role="vendor", client_id="agenda-a"))
    assert (await run(first, doc)).totals()["created"] == 5
    other = ctx.acting_for(Caller(role="vendor", client_id="agenda-b"))
    changed = feed_json([person("a", RPPS_A, slots("2026-06-12", 1))])  # would remove one
    before = await history_size(store)
    report = await run(other, changed)
    assert report.totals()["rejected"] == 4 and report.totals()["removed"] == 0
    assert any(f.code == "forbidden" for f in report.feeds[0].findings)
    assert await history_size(store) == before
    regulator = ctx.acting_for(Caller(role="regulator", client_id="samu"))
    assert (await run(regulator, doc)).totals()["rejected"] == 5  # may not write at all
    # the same content as stored: refused too (an "unchanged" would reveal another's data)
    assert (await run(other, doc)).totals()["rejected"] == 5
