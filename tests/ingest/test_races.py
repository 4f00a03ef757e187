"""Two ingests of the same practitioner at once, on SQLite and PostgreSQL: one wins whole,
the other retries (then writes only what still differs) or fails whole; never a mix."""

from __future__ import annotations

import asyncio

from fhir_server.interactions.context import Context
from fhir_server.storage import schema
from fhir_server.storage.port import Store
from mappings import sas
from tests.ingest.conftest import run
from tests.ingest.simple_format import feed_json, person, slots

RPPS = "10000000015"


async def slots_in_store(store: Store) -> set[str]:
    async with store.reading() as session:
        rows = await session.fetch(
            schema.resources.select().where(
                (schema.resources.c.res_type == "Slot") & schema.resources.c.deleted.is_(False)
            )
        )
    return {row.res_id for row in rows}


def ids(items: list[dict[str, str]]) -> set[str]:
    return {sas.stable_id("simple", "slot", f"a-{item['key']}") for item in items}


async def test_two_first_ingests_racing_write_each_slot_once(ctx: Context, store: Store) -> None:
    doc = feed_json([person("a", RPPS, slots("2026-06-12", 6))])
    one, two = await asyncio.gather(run(ctx, doc), run(ctx, doc))
    totals = sorted([one.totals(), two.totals()], key=lambda t: t["created"])
    assert totals[1]["created"] == 9 and totals[1]["rejected"] == 0
    # the loser saw the winner's rows (after a retry or after waiting): nothing to write
    assert totals[0] in (
        dict(created=0, updated=0, removed=0, unchanged=9, rejected=0),
        dict(created=0, updated=0, removed=0, unchanged=0, rejected=9),
    )
    async with store.reading() as session:
        versions = await session.fetch(schema.history.select())
    assert len(versions) == 9  # one version each: nothing written twice


async def test_two_different_snapshots_racing_leave_exactly_one(ctx: Context, store: Store) -> None:
    base = slots("2026-06-12", 8)
    await run(ctx, feed_json([person("a", RPPS, base)]))
    first = base[:5]  # drops 5..7
    second = [*base[3:], *slots("2026-06-12", 2, first_hour=18)]  # drops 0..2, adds two
    for _ in range(3):
        a, b = await asyncio.gather(
            run(ctx, feed_json([person("a", RPPS, first)])),
            run(ctx, feed_json([person("a", RPPS, second)])),
        )
        assert all(r.totals()["rejected"] in (0, 10) for r in (a, b)), (a.feeds, b.feeds)
        winner = await slots_in_store(store)
        assert winner in (ids(first), ids(second)), sorted(winner)
        # whichever committed last defines the agenda: re-ingesting it changes nothing
        last = first if winner == ids(first) else second
        again = await run(ctx, feed_json([person("a", RPPS, last)]))
        assert again.totals()["created"] + again.totals()["removed"] == 0
