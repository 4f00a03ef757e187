"""Racing writes on one resource: no lost update, no duplicate, no gap in versions."""

from __future__ import annotations

import asyncio

import pytest
from httpx import AsyncClient

from tests.api.conftest import FHIR, slot

pytestmark = pytest.mark.asyncio


@pytest.mark.usefixtures("sched_1")
async def test_racing_updates_make_consecutive_versions(client: AsyncClient) -> None:
    await client.put("/Slot/r", json=slot(id="r"), headers={"Content-Type": FHIR})
    results = await asyncio.gather(
        *[
            client.put(
                "/Slot/r", json=slot(id="r", comment=f"writer {i}"), headers={"Content-Type": FHIR}
            )
            for i in range(10)
        ]
    )
    assert sorted(r.status_code for r in results) == [200] * 10
    assert sorted(int(r.headers["etag"][3:-1]) for r in results) == list(range(2, 12))
    history = (await client.get("/Slot/r/_history", params={"_count": 50})).json()
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == [
        str(v) for v in range(11, 0, -1)
    ]


@pytest.mark.usefixtures("sched_1")
async def test_racing_if_match_lets_exactly_one_win(client: AsyncClient) -> None:
    await client.put("/Slot/m", json=slot(id="m"), headers={"Content-Type": FHIR})
    results = await asyncio.gather(
        *[
            client.put(
                "/Slot/m",
                json=slot(id="m", comment=f"writer {i}"),
                headers={"Content-Type": FHIR, "If-Match": 'W/"1"'},
            )
            for i in range(8)
        ]
    )
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200] + [412] * 7, statuses
    assert (await client.get("/Slot/m")).headers["etag"] == 'W/"2"'


@pytest.mark.usefixtures("sched_1")
async def test_racing_update_as_create(client: AsyncClient) -> None:
    results = await asyncio.gather(
        *[
            client.put(
                "/Slot/new", json=slot(id="new", comment=str(i)), headers={"Content-Type": FHIR}
            )
            for i in range(6)
        ]
    )
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200] * 5 + [201], statuses
    history = (await client.get("/Slot/new/_history")).json()
    assert history["total"] == 6
