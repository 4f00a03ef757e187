"""Referential integrity of writes (interactions/references.py), on every write path."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import orjson
import pytest
from httpx import AsyncClient

from fhir_server.app import create_app
from fhir_server.settings import Settings
from fhir_server.storage.port import Store
from tests.api.conftest import BASE, FHIR, practitioner, put_schedules, schedule, slot

pytestmark = pytest.mark.asyncio
H = {"Content-Type": FHIR}
PATCH = {"Content-Type": "application/json-patch+json"}


def dangling(r: httpx.Response) -> list[tuple[str, str]]:
    """(expression, diagnostics) of each issue of a refused write, which must be 400."""
    assert r.status_code == 400, r.text
    issues = r.json()["issue"]
    assert all(i["code"] == "not-found" for i in issues), issues
    return [(i["expression"][0], i["diagnostics"]) for i in issues]


async def count(client: AsyncClient, res_type: str) -> int:
    r = await client.get(f"/{res_type}", params={"_summary": "count"})
    total: int = r.json()["total"]
    return total


def appointment(**extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Appointment",
        "status": "proposed",
        "participant": [
            {"actor": {"reference": "Practitioner/nope"}, "status": "accepted"},
            {"actor": {"reference": "Patient/123"}, "status": "accepted"},  # type not served
            {"actor": {"reference": "#pat"}, "status": "accepted"},  # contained
            {"actor": {"reference": "https://other.example/fhir/Location/x"}, "status": "accepted"},
            {"actor": {"identifier": {"value": "x"}}, "status": "accepted"},
            {"actor": {"display": "Dr Who"}, "status": "accepted"},
        ],
        "slot": [{"reference": "Slot/gone/_history/1"}],
        "contained": [{"resourceType": "Patient", "id": "pat"}],
    }
    body.update(extra)
    return body


async def test_create_naming_an_unknown_schedule_is_refused(client: AsyncClient) -> None:
    r = await client.post("/Slot", json=slot(schedule={"reference": "Schedule/nope"}), headers=H)
    assert dangling(r) == [
        ("Slot.schedule", "Schedule/nope is not known to this server (referenced by Slot.schedule)")
    ]
    assert await count(client, "Slot") == 0
    await put_schedules(client, "nope")
    r = await client.post("/Slot", json=slot(schedule={"reference": "Schedule/nope"}), headers=H)
    assert r.status_code == 201, r.text


async def test_every_dangling_reference_is_named_and_only_those(client: AsyncClient) -> None:
    r = await client.post("/Appointment", json=appointment(), headers=H)
    assert [e for e, _ in dangling(r)] == [
        "Appointment.participant[0].actor",
        "Appointment.slot[0]",
    ]
    assert await count(client, "Appointment") == 0
    # a versioned reference names the resource; a deleted one is dangling
    await client.put("/Practitioner/nope", json=practitioner(id="nope"), headers=H)
    await put_schedules(client, "sched-1")
    await client.put("/Slot/gone", json=slot(id="gone"), headers=H)
    assert (await client.delete("/Slot/gone")).status_code in (200, 204)
    r = await client.post("/Appointment", json=appointment(), headers=H)
    assert dangling(r) == [
        ("Appointment.slot[0]", "Slot/gone was deleted (referenced by Appointment.slot[0])")
    ]
    await client.put("/Slot/gone", json=slot(id="gone"), headers=H)
    r = await client.post("/Appointment", json=appointment(), headers=H)
    assert r.status_code == 201, r.text


async def test_a_resource_may_reference_itself(client: AsyncClient) -> None:
    body = {"resourceType": "Location", "id": "l1", "partOf": {"reference": "Location/l1"}}
    assert (await client.put("/Location/l1", json=body, headers=H)).status_code == 201


@pytest.mark.usefixtures("sched_1")
async def test_update_conditional_writes_and_patch_are_checked(client: AsyncClient) -> None:
    bad = {"schedule": {"reference": "Schedule/nope"}}
    # update-as-create, then update
    assert dangling(await client.put("/Slot/s1", json=slot(id="s1", **bad), headers=H))
    assert (await client.put("/Slot/s1", json=slot(id="s1"), headers=H)).status_code == 201
    r = await client.put("/Slot/s1", json=slot(id="s1", **bad), headers=H)
    assert [e for e, _ in dangling(r)] == ["Slot.schedule"]
    # conditional create and conditional update
    other = [{"system": "urn:oid:1.2.250.1.213.1.4.10", "value": "slot-2"}]
    r = await client.post(
        "/Slot",
        json=slot(identifier=other, **bad),
        headers={**H, "If-None-Exist": "identifier=urn:oid:1.2.250.1.213.1.4.10|slot-2"},
    )
    assert dangling(r)
    r = await client.put(
        "/Slot?identifier=urn:oid:1.2.250.1.213.1.4.10|slot-2",
        json=slot(identifier=other, **bad),
        headers=H,
    )
    assert dangling(r)
    r = await client.put(
        "/Slot?identifier=urn:oid:1.2.250.1.213.1.4.10|slot-1", json=slot(**bad), headers=H
    )
    assert dangling(r)
    # patch: the patched result is checked
    ops = [{"op": "replace", "path": "/schedule/reference", "value": "Schedule/nope"}]
    assert [e for e, _ in dangling(await client.patch("/Slot/s1", json=ops, headers=PATCH))] == [
        "Slot.schedule"
    ]
    current = (await client.get("/Slot/s1")).json()
    assert current["meta"]["versionId"] == "1"
    assert current["schedule"]["reference"] == "Schedule/sched-1"
    assert await count(client, "Slot") == 1


@pytest.mark.usefixtures("sched_1")
async def test_deleting_a_referenced_resource_is_allowed(client: AsyncClient) -> None:
    assert (await client.put("/Slot/s1", json=slot(id="s1"), headers=H)).status_code == 201
    assert (await client.delete("/Schedule/sched-1")).status_code in (200, 204)
    assert (await client.get("/Slot/s1")).status_code == 200


def entry(resource: Any, method: str, url: str, full_url: str | None = None) -> dict[str, Any]:
    e: dict[str, Any] = {"resource": resource, "request": {"method": method, "url": url}}
    if full_url:
        e["fullUrl"] = full_url
    return e


def transaction(*entries: dict[str, Any], kind: str = "transaction") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


async def test_transaction_references_to_its_own_entries(client: AsyncClient) -> None:
    """A Slot before its Schedule (urn:uuid), a Slot naming a Schedule that a later PUT
    creates (PUT runs after POST), a Schedule naming a Practitioner created in the Bundle."""
    urn = "urn:uuid:7c4b0d7e-0000-4000-8000-000000000001"
    created = schedule()
    created.pop("id")
    bundle = transaction(
        entry(slot(schedule={"reference": urn}), "POST", "Slot"),
        entry(slot(schedule={"reference": "Schedule/later"}), "POST", "Slot"),
        entry(
            {**schedule("later"), "actor": [{"reference": "Practitioner/p1"}]},
            "PUT",
            "Schedule/later",
        ),
        entry(created, "POST", "Schedule", urn),
        entry(practitioner(id="p1"), "PUT", "Practitioner/p1"),
    )
    r = await client.post("/", json=bundle, headers=H)
    assert r.status_code == 200, r.text
    assert await count(client, "Slot") == 2


async def test_transaction_with_dangling_references_stores_nothing(client: AsyncClient) -> None:
    await put_schedules(client, "sched-1")
    bundle = transaction(
        entry(practitioner(id="p1"), "PUT", "Practitioner/p1"),
        entry(slot(schedule={"reference": "Schedule/nope"}), "POST", "Slot"),
        entry(slot(id="s2"), "PUT", "Slot/s2"),
        entry(None, "DELETE", "Schedule/sched-1"),
    )
    r = await client.post("/", json=bundle, headers=H)
    assert sorted(dangling(r)) == [
        (
            "Bundle.entry[1].resource.schedule",
            "Schedule/nope is not known to this server "
            "(referenced by Bundle.entry[1].resource.schedule)",
        ),
        (
            "Bundle.entry[2].resource.schedule",
            "Schedule/sched-1 was deleted (referenced by Bundle.entry[2].resource.schedule)",
        ),
    ]
    assert await count(client, "Slot") == 0
    assert (await client.get("/Practitioner/p1")).status_code == 404
    assert (await client.get("/Schedule/sched-1")).status_code == 200


@pytest.mark.usefixtures("sched_1")
async def test_transaction_patch_and_batch_entries(client: AsyncClient) -> None:
    await client.put("/Slot/s1", json=slot(id="s1"), headers=H)
    ops = [{"op": "replace", "path": "/schedule/reference", "value": "Schedule/nope"}]
    binary = {
        "resourceType": "Binary",
        "contentType": "application/json-patch+json",
        "data": base64.b64encode(orjson.dumps(ops)).decode(),
    }
    r = await client.post("/", json=transaction(entry(binary, "PATCH", "Slot/s1")), headers=H)
    assert [e for e, _ in dangling(r)] == ["Bundle.entry[0].resource.schedule"]
    # a batch entry is checked on its own: the others go through
    bundle = transaction(
        entry(slot(schedule={"reference": "Schedule/nope"}), "POST", "Slot"),
        entry(slot(id="s2"), "PUT", "Slot/s2"),
        kind="batch",
    )
    out = (await client.post("/", json=bundle, headers=H)).json()
    statuses = [e["response"]["status"] for e in out["entry"]]
    assert statuses[0].startswith("400") and statuses[1] == "201 Created", statuses
    issue = out["entry"][0]["response"]["outcome"]["issue"][0]
    assert issue["code"] == "not-found" and issue["expression"] == ["Slot.schedule"]


async def test_the_check_can_be_turned_off(store: Store, settings: Settings) -> None:
    relaxed = settings.model_copy(update={"referential_integrity": False})
    app = create_app(relaxed, store=store)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5000))
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
            r = await c.post("/Slot", json=slot(schedule={"reference": "Schedule/x"}), headers=H)
            assert r.status_code == 201, r.text
            bundle = transaction(entry(slot(schedule={"reference": "Schedule/y"}), "POST", "Slot"))
            assert (await c.post("/", json=bundle, headers=H)).status_code == 200


async def test_setting_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().referential_integrity is True
    monkeypatch.setenv("FHIR_REFERENTIAL_INTEGRITY", "false")
    assert Settings().referential_integrity is False
