"""``Searcher.execute``: the one way a search runs, for the session's caller.

The store is the real adapter with a stand-in policy in its one access seam (vendors see
Slots only, ``tests/storage/test_access.py``): what a caller may not see is neither matched,
counted nor included, and the availability cache (which knows nothing of callers) steps aside
for it while still answering the others.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl

import orjson
import pytest

from fhir_server.availability.search import AvailabilitySearch
from fhir_server.core.caller import Caller
from fhir_server.core.fhirtime import PARIS
from fhir_server.interactions import update
from fhir_server.interactions.context import Context
from fhir_server.interactions.search import SearchRequest, search
from fhir_server.search.execute import Searcher
from fhir_server.search.registry.parameters import default_registry
from tests.storage.test_access import open_migrated

QUERY = (
    "schedule=Schedule/s1&start=ge2026-06-01&status=free"
    "&_include=Slot:schedule&_include:iterate=Schedule:actor"
)


TYPE_CRENEAU = "https://mos.esante.gouv.fr/NOS/TRE_R314-TypeCreneau/FHIR/TRE-R314-TypeCreneau"
LABELS = (["PUBLIC"], ["CPTS"], [])  # slot0 PUBLIC, slot1 CPTS, slot2 none
VENDOR = Caller(role="vendor", client_id="agenda-pro")
REGULATOR = Caller(role="regulator", client_id="regulation-sw")


def slot(n: int) -> dict[str, Any]:
    security = [{"system": TYPE_CRENEAU, "code": c} for c in LABELS[n]]
    return {
        "resourceType": "Slot",
        "id": f"slot{n}",
        **({"meta": {"security": security}} if security else {}),
        "schedule": {"reference": "Schedule/s1"},
        "status": "free",
        "start": f"2026-06-02T{8 + n:02d}:00:00.000+02:00",
        "end": f"2026-06-02T{8 + n:02d}:20:00.000+02:00",
    }


@pytest.fixture
async def admin(database_url: str) -> AsyncIterator[Context]:
    store = await open_migrated(database_url)
    registry = default_registry()
    searcher = Searcher(registry, PARIS, availability=AvailabilitySearch(10_000))
    ctx = Context(store=store, registry=registry, timezone=PARIS, searcher=searcher)
    practitioner = {"resourceType": "Practitioner", "id": "p1", "active": True}
    await update.update(ctx, "Practitioner", "p1", practitioner)
    schedule = {"resourceType": "Schedule", "id": "s1", "actor": [{"reference": "Practitioner/p1"}]}
    await update.update(ctx, "Schedule", "s1", schedule)
    for n in range(3):  # the vendor's: it owns them
        await update.update(ctx.acting_for(VENDOR), "Slot", f"slot{n}", slot(n))
    try:
        yield ctx
    finally:
        await store.close()


async def searchset(ctx: Context, res_type: str, query: str) -> dict[str, Any]:
    req = SearchRequest(res_type, parse_qsl(query, keep_blank_values=True), "http://x")
    body: dict[str, Any] = orjson.loads((await search(ctx, req)).body)
    return body


def ids(bundle: dict[str, Any], mode: str) -> list[str]:
    return [
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in bundle.get("entry", [])
        if e["search"]["mode"] == mode
    ]


async def test_the_cache_answers_callers_who_see_everything(admin: Context) -> None:
    cache = admin.search.availability
    assert cache is not None
    bundle = await searchset(admin, "Slot", QUERY)
    assert ids(bundle, "match") == ["Slot/slot0", "Slot/slot1", "Slot/slot2"]
    assert ids(bundle, "include") == ["Schedule/s1", "Practitioner/p1"]
    assert cache.served == 1


async def test_a_caller_sees_only_its_rows_in_matches_counts_and_includes(admin: Context) -> None:
    cache = admin.search.availability
    assert cache is not None
    vendor = admin.acting_for(VENDOR)
    bundle = await searchset(vendor, "Slot", QUERY)
    assert ids(bundle, "match") == ["Slot/slot0", "Slot/slot1", "Slot/slot2"]
    assert ids(bundle, "include") == []  # the Schedule and the Practitioner are not the vendor's
    assert cache.served == 0  # owners are not cached: SQL applied the seam
    paged = await searchset(vendor, "Slot", "status=free&_count=2")
    assert paged["total"] == 3 and len(ids(paged, "match")) == 2
    hidden = await searchset(vendor, "Practitioner", "_summary=count")  # not the vendor's
    assert hidden["total"] == 0
    assert (await searchset(admin, "Practitioner", "_summary=count"))["total"] == 1
    revinclude = await searchset(admin, "Schedule", "_revinclude=Slot:schedule")
    assert len(ids(revinclude, "include")) == 3
    assert (await searchset(vendor, "Schedule", "_revinclude=Slot:schedule")).get("entry") is None


async def test_the_cache_filters_slots_by_the_labels_a_role_sees(admin: Context) -> None:
    cache = admin.search.availability
    assert cache is not None
    regulator = admin.acting_for(REGULATOR)
    bundle = await searchset(regulator, "Slot", QUERY)
    # PUBLIC is shown; CPTS and unlabelled slots are not a regulator's by default
    assert ids(bundle, "match") == ["Slot/slot0"]
    assert ids(bundle, "include") == ["Schedule/s1", "Practitioner/p1"]
    assert cache.served == 1  # answered from the cache, filtered on the cached labels
    sql = Searcher(admin.registry, PARIS)  # the same search without the cache
    uncached = await searchset(replace(regulator, searcher=sql), "Slot", QUERY)
    assert ids(uncached, "match") == ids(bundle, "match")
    assert ids(uncached, "include") == ids(bundle, "include")
    assert ids(await searchset(admin, "Slot", QUERY), "match") == [
        f"Slot/slot{n}" for n in range(3)
    ]


async def test_chains_read_only_through_the_caller_s_rows(admin: Context) -> None:
    """A chain or ``_has`` hop reads the rows its caller may see, so it tells nothing of
    the others: not the CPTS Slot a regulator may not see, not the Schedule and
    Practitioner that are not the vendor's."""
    regulator = admin.acting_for(REGULATOR)
    for hidden in ("slot1", "slot2"):  # CPTS, unlabelled: not a regulator's
        query = f"_has:Slot:schedule:_id={hidden}"
        assert ids(await searchset(admin, "Schedule", query), "match") == ["Schedule/s1"]
        assert ids(await searchset(regulator, "Schedule", query), "match") == []
        counted = await searchset(regulator, "Schedule", query + "&_summary=count")
        assert counted["total"] == 0
    shown = await searchset(regulator, "Schedule", "_has:Slot:schedule:_id=slot0")
    assert ids(shown, "match") == ["Schedule/s1"]
    # the SOS shape: a date pair read through idx_ref_date, then the caller's Slots
    sos = "_has:Slot:schedule:start=ge2026-06-02T09:30:00%2B02:00&_has:Slot:schedule:status=free"
    assert ids(await searchset(admin, "Schedule", sos), "match") == ["Schedule/s1"]
    assert ids(await searchset(regulator, "Schedule", sos), "match") == []

    vendor = admin.acting_for(VENDOR)
    forward = "schedule.actor:Practitioner.active=true"
    everyone = [f"Slot/slot{n}" for n in range(3)]
    assert ids(await searchset(admin, "Slot", forward), "match") == everyone
    assert ids(await searchset(vendor, "Slot", forward), "match") == []  # not its Schedule
    assert ids(await searchset(vendor, "Slot", "status=free"), "match") == everyone
