"""The event formats' output PUT as it is to the real app (SQLite and PostgreSQL): references
resolve and every resource is accepted.

The place address these formats do not carry is written as FHIR says (``"line": [null]``
with a ``_line`` data-absent-reason; ``sas.unknown_address``): the server accepts such a
null, paired with its extension, and refuses a bare one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx

from mappings import registry
from mappings.contract import MappingOptions, MappingResult
from tests.api.conftest import FHIR, client, settings
from tests.mappings.golden import DATA

__all__ = ["client", "settings"]
ORDER = ["Practitioner", "PractitionerRole", "Schedule", "Slot", "Appointment"]


def _in_order(result: MappingResult) -> list[dict[str, Any]]:
    resources = [r for f in result.feeds if not f.rejected for r in (*f.resources, *f.slots)]
    return sorted(resources, key=lambda r: ORDER.index(r["resourceType"]))


async def _put_all(client: httpx.AsyncClient, result: MappingResult) -> list[int]:
    codes = []
    for resource in _in_order(result):
        path = f"/{resource['resourceType']}/{resource['id']}"
        r = await client.put(path, json=resource, headers={"Content-Type": FHIR})
        assert r.status_code in (200, 201), (path, r.text)
        codes.append(r.status_code)
    return codes


async def test_siu_output_is_stored(client: httpx.AsyncClient) -> None:
    data = (DATA / "hl7v2" / "clicrdv_stream.hl7").read_bytes()
    result = registry.mapper("hl7v2").map(data, MappingOptions())
    assert await _put_all(client, result) == [201] * 5
    (slot,) = result.feeds[0].slots
    found = (await client.get("/Slot", params={"status": "free", "_id": slot["id"]})).json()
    assert len(found.get("entry", [])) == 1


async def test_ical_output_is_stored(client: httpx.AsyncClient) -> None:
    data = (DATA / "ical" / "freebusy.ics").read_bytes()
    assert await _put_all(client, registry.mapper("ical").map(data, MappingOptions())) == [201] * 7
    busy = (await client.get("/Slot", params={"status": "busy"})).json()
    assert len(busy.get("entry", [])) == 2
    opening = registry.mapper("ical").map(
        (DATA / "ical" / "dst_nights.ics").read_bytes(),
        MappingOptions(now=datetime(2026, 3, 28, tzinfo=UTC), window_days=3),
    )
    assert len(await _put_all(client, opening)) == 3 + 22
