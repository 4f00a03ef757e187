"""A vendor request is one motive's availabilities (Keldoc timetables/{motive}): each motive
has its own Schedule, so reconciling one motive's snapshot never removes another's slots."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson

from fhir_server.ingest.report import RunReport
from fhir_server.ingest.run import ingest
from fhir_server.interactions.context import Context
from fhir_server.storage.port import Store
from mappings import registry
from mappings.contract import MappingOptions

KELDOC = Path(__file__).parents[1] / "mappings" / "data" / "keldoc" / "timetable.input.json"
RPPS = {"71001": "10000000015", "71002": "10000000023"}


def one_motive(motive_id: int, hour: int) -> dict[str, Any]:
    day = "2026-06-15"
    doc = copy.deepcopy(orjson.loads(KELDOC.read_bytes()))
    doc["motive"]["id"] = motive_id
    doc["motive"]["teleconsultation"] = False
    doc["timetable"]["availabilities"] = {
        day: [{"start_time": f"{day}T{hour:02}:00:00.000000+0200", "agenda_id": 71001}]
    }
    return doc


OPTIONS = MappingOptions(
    source="keldoc.json", rpps_table=RPPS, booking_url="https://rdv.example.org/book"
)


async def run(ctx: Context, doc: dict[str, Any]) -> RunReport:
    return await ingest(ctx, registry.mapper("keldoc"), orjson.dumps(doc), OPTIONS)


def slot_ids(doc: dict[str, Any]) -> list[str]:
    result = registry.mapper("keldoc").map(orjson.dumps(doc), OPTIONS)
    return [slot["id"] for feed in result.feeds for slot in feed.slots]


async def test_a_second_motive_keeps_the_first_motives_slots(ctx: Context, store: Store) -> None:
    nine, ten = one_motive(90011, 9), one_motive(90012, 10)
    first = await run(ctx, nine)
    assert first.totals()["created"] >= 1 and first.totals()["rejected"] == 0
    # the same day (the same window), another motive, another hour
    second = await run(ctx, ten)
    assert second.totals()["removed"] == 0, second.totals()
    again = await run(ctx, nine)
    assert again.totals() | {"unchanged": 0} == dict(
        created=0, updated=0, removed=0, unchanged=0, rejected=0
    )
    slots = [await store.read("Slot", sid) for sid in slot_ids(nine) + slot_ids(ten)]
    assert len(slots) == 2 and all(s is not None and not s.deleted for s in slots)
