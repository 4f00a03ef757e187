"""The fast paths of ingestion change nothing but the speed, on SQLite and PostgreSQL: index
rows exactly as the normal write path makes them, unchanged feeds found by reading only
(no write transaction, no version, no counter), and every other feed left to the write
path (a changed slot, a vanished one, another's resources, an invalid slot)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from fhir_server.core.caller import Caller
from fhir_server.ingest import precheck, reconcile
from fhir_server.interactions import update
from fhir_server.interactions.context import Context
from fhir_server.storage import schema
from fhir_server.storage.port import Store
from mappings import sas
from tests.ingest.conftest import run
from tests.ingest.simple_format import feed_json, person, slots
from tests.ingest.test_reconcile import RPPS_A, RPPS_B, history_size, slot_id, watch


async def index_rows(store: Store, res_type: str, res_id: str) -> dict[str, list[Any]]:
    """Every index row of a stored resource, by table, without its pk (sorted)."""
    async with store.reading() as session:
        found = await session.fetch(
            schema.resources.select().where(
                schema.resources.c.res_type == res_type, schema.resources.c.res_id == res_id
            )
        )
        pk = found[0].pk
        out = {}
        for kind, table in schema.INDEX_TABLES.items():
            rows = await session.fetch(table.select().where(table.c.res_pk == pk))
            out[kind] = sorted(
                (tuple((k, v) for k, v in row._mapping.items() if k != "res_pk") for row in rows),
                key=repr,
            )
    return out


async def test_index_rows_of_an_ingested_resource_are_the_normal_write_paths(
    ctx: Context, store: Store
) -> None:
    await run(ctx, feed_json([person("a", RPPS_A, slots("2026-06-12", 2))]))
    written = [
        ("Practitioner", sas.practitioner_id("simple", "a")),
        ("PractitionerRole", sas.role_id("simple", "a", "cab")),
        ("Schedule", sas.schedule_id("simple", "a", "cab")),
        ("Slot", slot_id("2026-06-12-1")),
    ]
    for res_type, res_id in written:
        ingested = await index_rows(store, res_type, res_id)
        assert (
            ingested["token"] and ingested["reference" if res_type != "Practitioner" else "token"]
        )
        stored = await store.read(res_type, res_id)
        assert stored is not None
        body = orjson.loads(stored.content)
        del body["meta"]["versionId"], body["meta"]["lastUpdated"]
        result = await update.update(ctx, res_type, res_id, body)  # PUT: the normal path
        assert result.stored.version == stored.version + 1  # its rows were rewritten
        assert await index_rows(store, res_type, res_id) == ingested, res_type


async def test_an_unchanged_feed_opens_no_write_transaction(ctx: Context, store: Store) -> None:
    doc = feed_json(
        [person("a", RPPS_A, slots("2026-06-12", 3)), person("b", RPPS_B, slots("2026-06-12", 2))]
    )
    await run(ctx, doc)
    before = (await history_size(store), await watch(store))
    report = await run(ctx, doc)
    assert report.totals() == dict(created=0, updated=0, removed=0, unchanged=11, rejected=0)
    assert [f.attempts for f in report.feeds] == [0, 0]  # no write transaction at all
    assert (await history_size(store), await watch(store)) == before


async def test_only_the_changed_practitioner_goes_through_the_write_path(
    ctx: Context, store: Store
) -> None:
    a, b = slots("2026-06-12", 3), slots("2026-06-12", 2)
    await run(ctx, feed_json([person("a", RPPS_A, a), person("b", RPPS_B, b)]))
    moved = [dict(b[0], end="2026-06-12T08:20:00"), b[1]]
    report = await run(ctx, feed_json([person("a", RPPS_A, a), person("b", RPPS_B, moved)]))
    by_key = {f.key: f for f in report.feeds}
    assert (by_key["a"].attempts, by_key["a"].unchanged) == (0, 6)
    assert (by_key["b"].attempts, by_key["b"].updated, by_key["b"].unchanged) == (1, 1, 4)


async def test_a_vanished_slot_is_removed_though_the_rest_is_unchanged(
    ctx: Context, store: Store
) -> None:
    three = slots("2026-06-12", 3)
    await run(ctx, feed_json([person("a", RPPS_A, three)]))
    report = await run(ctx, feed_json([person("a", RPPS_A, three[:2])]))
    assert report.totals() == dict(created=0, updated=0, removed=1, unchanged=5, rejected=0)
    assert await store.read("Slot", slot_id("2026-06-12-2")) is not None  # deleted: a tombstone
    assert (await store.read("Slot", slot_id("2026-06-12-2"))).deleted  # type: ignore[union-attr]


async def test_a_deleted_resource_is_not_unchanged(ctx: Context, store: Store) -> None:
    two = slots("2026-06-12", 2)
    doc = feed_json([person("a", RPPS_A, two)])
    await run(ctx, doc)
    await run(ctx, feed_json([person("a", RPPS_A, two[:1])]))  # slot 1 deleted
    report = await run(ctx, doc)
    assert report.totals() == dict(created=1, updated=0, removed=0, unchanged=4, rejected=0)


async def test_the_same_content_as_anothers_is_still_refused(ctx: Context, store: Store) -> None:
    doc = feed_json([person("a", RPPS_A, slots("2026-06-12", 2))])
    await run(ctx.acting_for(Caller(role="vendor", client_id="agenda-a")), doc)
    report = await run(ctx.acting_for(Caller(role="vendor", client_id="agenda-b")), doc)
    assert report.totals()["rejected"] == 5 and report.totals()["unchanged"] == 0
    assert any(f.code == "forbidden" for f in report.feeds[0].findings)
    same_owner = await run(ctx.acting_for(Caller(role="vendor", client_id="agenda-a")), doc)
    assert same_owner.totals()["unchanged"] == 5 and same_owner.feeds[0].attempts == 0


async def test_one_invalid_slot_among_unchanged_ones_rejects_the_feed(
    ctx: Context, store: Store
) -> None:
    two = slots("2026-06-12", 2)
    await run(ctx, feed_json([person("a", RPPS_A, two)]))
    before = await history_size(store)
    odd = [two[0], dict(two[1], types=["NOPE"])]  # outside TRE-R314: the profile refuses it
    report = await run(ctx, feed_json([person("a", RPPS_A, odd)]))
    assert report.totals()["rejected"] == 5 and report.totals()["unchanged"] == 0
    assert await history_size(store) == before


async def test_in_a_shared_transaction_a_refused_feed_rolls_back_alone(
    ctx: Context, store: Store
) -> None:
    odd = [*slots("2026-06-12", 2), dict(slots("2026-06-12", 3)[2], types=["NOPE"])]
    doc = feed_json(
        [
            person("a", RPPS_A, slots("2026-06-12", 2)),
            person("b", RPPS_B, odd),  # the profile refuses its third slot, after two were put
            person("c", "10000000031", slots("2026-06-12", 1)),
        ]
    )
    report = await run(ctx, doc)
    by_key = {f.key: f for f in report.feeds}
    assert (by_key["a"].created, by_key["b"].rejected, by_key["c"].created) == (5, 6, 4)
    assert by_key["b"].created == 0 and by_key["b"].findings
    assert [f.attempts for f in report.feeds] == [1, 1, 1]  # one transaction, no retry
    assert await store.read("Practitioner", sas.practitioner_id("simple", "b")) is None
    assert await store.read("Slot", sas.stable_id("simple", "slot", "b-2026-06-12-0")) is None
    assert await store.read("Slot", sas.stable_id("simple", "slot", "c-2026-06-12-0")) is not None
    again = await run(ctx, doc)  # a and c unchanged (no transaction), b refused again
    assert [f.attempts for f in again.feeds] == [0, 1, 0]
    assert again.totals() == dict(created=0, updated=0, removed=0, unchanged=9, rejected=6)


async def test_two_inputs_of_several_practitioners_racing_write_each_once(
    ctx: Context, store: Store
) -> None:
    people = [person(k, r, slots("2026-06-12", 4)) for k, r in (("a", RPPS_A), ("b", RPPS_B))]
    one, two = await asyncio.gather(
        run(ctx, feed_json(people)), run(ctx, feed_json(list(reversed(people))))
    )
    for key in ("a", "b"):
        counts = sorted(
            (next(f for f in r.feeds if f.key == key).counts() for r in (one, two)),
            key=lambda c: c["created"],
        )
        assert counts[1]["created"] == 7 and counts[1]["rejected"] == 0  # one wins whole
        assert counts[0]["created"] == 0 and counts[0]["updated"] == 0  # the other: nothing
    assert await history_size(store) == 14  # each resource written once


async def test_several_groups_each_feed_whole(
    ctx: Context, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reconcile, "GROUP_FEEDS", 2)  # 3 groups, 3 transactions
    rpps = [f"1000000{n:04d}" for n in range(5)]
    people = [person(f"p{n}", rpps[n], slots("2026-06-12", 3)) for n in range(5)]
    people[2]["slots"][1]["types"] = ["NOPE"]  # refused by the profile: p2 alone rolls back
    report = await run(ctx, feed_json(people))
    created = {f.key: (f.created, f.rejected) for f in report.feeds}
    assert created == {"p0": (6, 0), "p1": (6, 0), "p2": (0, 6), "p3": (6, 0), "p4": (6, 0)}
    assert await history_size(store) == 24
    people[2]["slots"][1]["types"] = ["PUBLIC"]
    people[4]["slots"] = people[4]["slots"][:2]  # one vanished
    again = await run(ctx, feed_json(people))
    assert again.totals() == dict(created=6, updated=0, removed=1, unchanged=23, rejected=0)
    assert [f.attempts for f in again.feeds] == [0, 0, 1, 0, 1]


async def test_a_feed_too_big_for_one_read_goes_through_the_write_path(
    ctx: Context, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(precheck, "BATCH_KEYS", 6)
    doc = feed_json(
        [person("a", RPPS_A, slots("2026-06-12", 2)), person("b", RPPS_B, slots("2026-06-12", 5))]
    )
    await run(ctx, doc)
    report = await run(ctx, doc)
    assert report.totals() == dict(created=0, updated=0, removed=0, unchanged=13, rejected=0)
    assert [f.attempts for f in report.feeds] == [0, 1]  # b: 8 resources, more than 6
