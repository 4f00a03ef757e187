"""batch and transaction Bundles."""

from __future__ import annotations

from typing import Any

import pytest
from httpx import AsyncClient

from fhir_server.storage.port import Store
from tests.api.conftest import FHIR, practitioner, slot

pytestmark = pytest.mark.asyncio


def entry(
    resource: dict[str, Any], method: str, url: str, full_url: str | None = None, **request: Any
) -> dict[str, Any]:
    e: dict[str, Any] = {"resource": resource, "request": {"method": method, "url": url, **request}}
    if full_url:
        e["fullUrl"] = full_url
    return e


async def test_transaction_rewrites_urn_uuid_references(client: AsyncClient) -> None:
    schedule = {
        "resourceType": "Schedule",
        "actor": [{"reference": "urn:uuid:00000000-0000-0000-0000-0000000000a1"}],
    }
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            entry(schedule, "POST", "Schedule", "urn:uuid:00000000-0000-0000-0000-0000000000b2"),
            entry(
                practitioner(),
                "POST",
                "Practitioner",
                "urn:uuid:00000000-0000-0000-0000-0000000000a1",
            ),
            entry(
                slot(schedule={"reference": "urn:uuid:00000000-0000-0000-0000-0000000000b2"}),
                "POST",
                "Slot",
            ),
        ],
    }
    r = await client.post("/", json=bundle, headers={"Content-Type": FHIR})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["type"] == "transaction-response"
    assert [e["response"]["status"] for e in out["entry"]] == ["201 Created"] * 3
    sched_id = out["entry"][0]["resource"]["id"]
    prac_id = out["entry"][1]["resource"]["id"]
    assert out["entry"][0]["resource"]["actor"][0]["reference"] == f"Practitioner/{prac_id}"
    assert out["entry"][2]["resource"]["schedule"]["reference"] == f"Schedule/{sched_id}"
    stored = (await client.get(f"/Schedule/{sched_id}")).json()
    assert stored["actor"][0]["reference"] == f"Practitioner/{prac_id}"


async def test_transaction_with_one_bad_entry_stores_nothing(
    client: AsyncClient, store: Store
) -> None:
    entries = [entry(slot(identifier=[{"value": f"s{i}"}]), "POST", "Slot") for i in range(100)]
    entries.insert(57, entry(slot(start=12), "POST", "Slot"))
    r = await client.post(
        "/",
        json={"resourceType": "Bundle", "type": "transaction", "entry": entries},
        headers={"Content-Type": FHIR},
    )
    assert r.status_code == 400
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    assert any("Bundle.entry[57]" in e for i in body["issue"] for e in i.get("expression", []))
    page = await store.history(res_type=None, res_id=None, since=None, at=None, count=1, offset=0)
    assert page.total == 0


@pytest.mark.usefixtures("sched_1")
async def test_transaction_conditional_entries_and_order(client: AsyncClient) -> None:
    await client.put("/Slot/old", json=slot(id="old"), headers={"Content-Type": FHIR})
    sys_ = "urn:oid:1.2.250.1.71.4.2.1"
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            entry(
                practitioner("810003333333"),
                "POST",
                "Practitioner",
                "urn:uuid:1",
                ifNoneExist=f"identifier={sys_}|810003333333",
            ),
            entry(
                practitioner("810004444444"), "PUT", f"Practitioner?identifier={sys_}|810004444444"
            ),
            {"request": {"method": "DELETE", "url": "Slot/old"}},
            {"request": {"method": "GET", "url": "Slot/old"}},
        ],
    }
    r = await client.post("/", json=bundle, headers={"Content-Type": FHIR})
    # the GET runs after the DELETE in the same transaction: it fails, so nothing happens
    assert r.status_code == 410
    assert (await client.get("/Slot/old")).status_code == 200
    bundle["entry"] = bundle["entry"][:3]
    r = await client.post("/", json=bundle, headers={"Content-Type": FHIR})
    assert r.status_code == 200, r.text
    statuses = [e["response"]["status"] for e in r.json()["entry"]]
    assert statuses == ["201 Created", "201 Created", "204 No Content"]
    again = await client.post("/", json=bundle, headers={"Content-Type": FHIR})
    assert [e["response"]["status"] for e in again.json()["entry"]] == [
        "200 OK",
        "200 OK",
        "204 No Content",
    ]


@pytest.mark.usefixtures("sched_1")
async def test_batch_reports_each_entry(client: AsyncClient) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            entry(slot(), "POST", "Slot"),
            entry(slot(start="nope"), "POST", "Slot"),
            {"request": {"method": "GET", "url": "Slot/missing"}},
        ],
    }
    r = await client.post("/", json=bundle, headers={"Content-Type": FHIR})
    assert r.status_code == 200
    out = r.json()
    assert out["type"] == "batch-response"
    statuses = [e["response"]["status"] for e in out["entry"]]
    assert (
        statuses[0] == "201 Created"
        and statuses[1].startswith("400")
        and statuses[2].startswith("404")
    )
    assert out["entry"][1]["response"]["outcome"]["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize(
    "body",
    [
        {"resourceType": "Bundle", "type": "collection"},
        {"resourceType": "Slot"},
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [{"resource": {"resourceType": "Slot"}}],
        },
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "request": {"method": "POST", "url": "http://elsewhere.example/Slot"},
                    "resource": slot(),
                }
            ],
        },
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [{"request": {"method": "FETCH", "url": "Slot"}}],
        },
    ],
)
async def test_bad_bundles(client: AsyncClient, store: Store, body: dict[str, Any]) -> None:
    r = await client.post("/", json=body, headers={"Content-Type": FHIR})
    assert r.status_code == 400, r.text
    assert r.json()["resourceType"] == "OperationOutcome"
    page = await store.history(res_type=None, res_id=None, since=None, at=None, count=1, offset=0)
    assert page.total == 0


@pytest.mark.usefixtures("sched_1")
async def test_batch_reads_vreads_and_searches(client: AsyncClient) -> None:
    await client.put("/Slot/b1", json=slot(id="b1"), headers={"Content-Type": FHIR})
    await client.put("/Slot/b1", json=slot(id="b1", status="busy"), headers={"Content-Type": FHIR})
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"request": {"method": "GET", "url": "Slot/b1/_history/1"}},
            {"request": {"method": "GET", "url": "Slot?status=busy"}},
            {"request": {"method": "GET", "url": "Slot/b1/_history/7"}},
            {"request": {"method": "GET", "url": "Slot/b1/deep/path"}},
        ],
    }
    out = (await client.post("/", json=bundle, headers={"Content-Type": FHIR})).json()
    assert out["entry"][0]["resource"]["status"] == "free"
    found = out["entry"][1]["resource"]
    assert found["type"] == "searchset" and found["total"] == 1
    assert out["entry"][2]["response"]["status"].startswith("404")
    assert out["entry"][3]["response"]["status"].startswith("400")
