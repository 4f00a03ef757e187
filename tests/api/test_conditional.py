"""Conditional create, update and delete, including two creates racing."""

from __future__ import annotations

import asyncio

import pytest
from httpx import AsyncClient

from tests.api.conftest import FHIR, practitioner

pytestmark = pytest.mark.asyncio
SYS = "urn:oid:1.2.250.1.71.4.2.1"


async def test_conditional_create(client: AsyncClient) -> None:
    headers = {"Content-Type": FHIR, "If-None-Exist": f"identifier={SYS}|810001234567"}
    first = await client.post("/Practitioner", json=practitioner(), headers=headers)
    assert first.status_code == 201
    again = await client.post("/Practitioner", json=practitioner(), headers=headers)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    # Several matches: active Practitioners may not share an identifier (FHIR_UNIQUE_IDENTIFIERS)
    # and one active among inactive ones is the match, so two inactive ones.
    headers["If-None-Exist"] = f"identifier={SYS}|810001234568"
    for _ in range(2):
        inactive = practitioner("810001234568", active=False)
        await client.post("/Practitioner", json=inactive, headers={"Content-Type": FHIR})
    many = await client.post("/Practitioner", json=practitioner("810001234568"), headers=headers)
    assert many.status_code == 412
    unknown = await client.post(
        "/Practitioner", json=practitioner(), headers={**headers, "If-None-Exist": "nonsense=1"}
    )
    assert unknown.status_code == 400


async def test_conditional_creates_racing_make_one(client: AsyncClient) -> None:
    headers = {"Content-Type": FHIR, "If-None-Exist": f"identifier={SYS}|810009999999"}
    results = await asyncio.gather(
        *[
            client.post("/Practitioner", json=practitioner("810009999999"), headers=headers)
            for _ in range(8)
        ]
    )
    statuses = sorted(r.status_code for r in results)
    assert statuses.count(201) == 1 and statuses.count(200) == 7, statuses
    assert len({r.json()["id"] for r in results}) == 1
    found = (await client.get("/Practitioner", params={"identifier": f"{SYS}|810009999999"})).json()
    assert found["total"] == 1


async def test_conditional_update(client: AsyncClient) -> None:
    url = f"/Practitioner?identifier={SYS}|810001111111"
    created = await client.put(
        url, json=practitioner("810001111111"), headers={"Content-Type": FHIR}
    )
    assert created.status_code == 201
    pid = created.json()["id"]
    updated = await client.put(
        url, json=practitioner("810001111111", active=False), headers={"Content-Type": FHIR}
    )
    assert (
        updated.status_code == 200
        and updated.json()["id"] == pid
        and updated.json()["active"] is False
    )
    # The condition names the resource: another id in the body is ignored (docs/api.md).
    wrong_id = await client.put(
        url,
        json=practitioner("810001111111", id="other", active=False),
        headers={"Content-Type": FHIR},
    )
    assert wrong_id.status_code == 200 and wrong_id.json()["id"] == pid
    await client.post(
        "/Practitioner",
        json=practitioner("810001111111", active=False),
        headers={"Content-Type": FHIR},
    )
    many = await client.put(url, json=practitioner("810001111111"), headers={"Content-Type": FHIR})
    assert many.status_code == 412


async def test_conditional_delete(client: AsyncClient) -> None:
    await client.post(
        "/Practitioner", json=practitioner("810002222222"), headers={"Content-Type": FHIR}
    )
    r = await client.delete("/Practitioner", params={"identifier": f"{SYS}|810002222222"})
    assert r.status_code == 204
    found = (await client.get("/Practitioner", params={"identifier": f"{SYS}|810002222222"})).json()
    assert found["total"] == 0
    assert (await client.delete("/Practitioner")).status_code == 405
