"""Writes are validated against the profiles they claim (SAS package from the reference cache)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from httpx import AsyncClient

from fhir_server.storage.port import Store
from tests.api.conftest import FHIR, PACKAGES, put_schedules

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.skipif(not PACKAGES.is_dir(), reason=f"FHIR package cache not found at {PACKAGES}"),
]
EXAMPLES = PACKAGES / "ans.fhir.fr.sas#1.1.0" / "package" / "example"


def example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / f"{name}.json").read_text())
    return data


async def test_conformant_sas_slot_is_stored(client: AsyncClient) -> None:
    await put_schedules(client, "ExampleSchedule1")
    r = await client.post(
        "/Slot", json=example("Slot-ExampleSlotPSIndiv1"), headers={"Content-Type": FHIR}
    )
    assert r.status_code == 201, r.text


@pytest.mark.parametrize(
    ("change", "expression"),
    [
        (lambda s: s.__setitem__("status", "busy"), "Slot.status"),
        (lambda s: s.pop("end"), "Slot.end"),
        (
            lambda s: s["meta"]["security"][0].__setitem__("system", "urn:wrong"),
            "Slot.meta.security",
        ),
    ],
)
async def test_profile_violation_is_422_with_every_issue(
    client: AsyncClient, store: Store, change: Any, expression: str
) -> None:
    body = copy.deepcopy(example("Slot-ExampleSlotPSIndiv1"))
    change(body)
    r = await client.post("/Slot", json=body, headers={"Content-Type": FHIR})
    assert r.status_code in (400, 422), r.text  # a missing required element is already base R4
    outcome = r.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert any(
        e.startswith(expression) for i in outcome["issue"] for e in i.get("expression", [])
    ), outcome
    page = await store.history(res_type=None, res_id=None, since=None, at=None, count=1, offset=0)
    assert page.total == 0


async def test_transaction_reports_the_entry(client: AsyncClient, store: Store) -> None:
    good = example("Slot-ExampleSlotPSIndiv1")
    bad = copy.deepcopy(good)
    bad["status"] = "busy"
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": good, "request": {"method": "POST", "url": "Slot"}},
            {"resource": bad, "request": {"method": "POST", "url": "Slot"}},
        ],
    }
    r = await client.post("/", json=bundle, headers={"Content-Type": FHIR})
    assert r.status_code == 422, r.text
    expressions = [e for i in r.json()["issue"] for e in i.get("expression", [])]
    assert any(e.startswith("Bundle.entry[1]") for e in expressions), expressions
    page = await store.history(res_type=None, res_id=None, since=None, at=None, count=1, offset=0)
    assert page.total == 0


async def test_unknown_claimed_profile_only_warns(client: AsyncClient) -> None:
    await put_schedules(client, "ExampleSchedule1")
    body = example("Slot-ExampleSlotPSIndiv1")
    body["meta"]["profile"] = ["http://example.org/StructureDefinition/not-here"]
    r = await client.post("/Slot", json=body, headers={"Content-Type": FHIR})
    assert r.status_code == 201, r.text


async def test_validate_operation(client: AsyncClient, store: Store) -> None:
    good = example("Slot-ExampleSlotPSIndiv1")
    r = await client.post("/Slot/$validate", json=good, headers={"Content-Type": FHIR})
    assert r.status_code == 200
    assert all(i["severity"] in ("information", "warning") for i in r.json()["issue"])
    bad = copy.deepcopy(good)
    bad["status"] = "busy"
    params = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "resource", "resource": bad},
            {"name": "mode", "valueCode": "create"},
        ],
    }
    r = await client.post(
        "/Slot/$validate", json=params, headers={"Content-Type": FHIR, "Accept-Language": "fr-FR"}
    )
    assert r.status_code == 200
    errors_ = [i for i in r.json()["issue"] if i["severity"] == "error"]
    assert errors_ and any("Slot.status" in e for i in errors_ for e in i.get("expression", []))
    plain = {**{k: v for k, v in good.items() if k != "meta"}, "status": "busy"}
    r = await client.post(
        "/Slot/$validate?profile=http://sas.fr/fhir/StructureDefinition/FrSlotAgregateur",
        json=plain,
        headers={"Content-Type": FHIR},
    )
    # the profile asked for applies although the resource does not claim it
    assert any(i["severity"] == "error" for i in r.json()["issue"])
    r = await client.post(
        "/Slot/$validate",
        json={"resourceType": "Slot", "start": 12},
        headers={"Content-Type": FHIR},
    )
    assert r.status_code == 200 and any(i["severity"] == "error" for i in r.json()["issue"])
    r = await client.post(
        "/Slot/missing/$validate?mode=delete",
        json={"resourceType": "Parameters"},
        headers={"Content-Type": FHIR},
    )
    assert r.status_code == 404
    assert (
        await client.post("/Slot/$validate?mode=bogus", json=good, headers={"Content-Type": FHIR})
    ).status_code == 400
    page = await store.history(res_type=None, res_id=None, since=None, at=None, count=1, offset=0)
    assert page.total == 0  # $validate never stores
