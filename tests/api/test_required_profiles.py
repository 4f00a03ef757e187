"""Profiles a write must claim and satisfy, per resource type and client role
(``FHIR_REQUIRED_PROFILES``): create, update, conditional update, patch, transaction and batch
entries. Authentication is not built yet: the role is ``FHIR_DEFAULT_ROLE`` for every request,
or another one through ``Context.acting_as`` (where the auth module will plug in)."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
import pytest
from httpx import AsyncClient
from pydantic import ValidationError

from fhir_server.app import create_app, make_context
from fhir_server.core import errors
from fhir_server.interactions import create, update
from fhir_server.settings import Settings
from fhir_server.storage.port import Store
from tests.api.conftest import BASE, FHIR, PACKAGES, practitioner, put_schedules, schedule, slot

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.skipif(not PACKAGES.is_dir(), reason=f"FHIR package cache not found at {PACKAGES}"),
]
SLOT_PROFILE = "http://sas.fr/fhir/StructureDefinition/FrSlotAgregateur"
EXAMPLE = (
    PACKAGES / "ans.fhir.fr.sas#1.1.0" / "package" / "example" / "Slot-ExampleSlotPSIndiv1.json"
)
VENDOR_SLOTS = {"vendor": {"Slot": [SLOT_PROFILE]}}
H = {"Content-Type": FHIR}


def sas_slot(**extra: Any) -> dict[str, Any]:
    """A Slot that claims and satisfies FrSlotAgregateur (the SAS package's example)."""
    body: dict[str, Any] = json.loads(EXAMPLE.read_text())
    body.pop("id")
    body.update(extra)
    return body


def plain_slot(**extra: Any) -> dict[str, Any]:
    """A valid R4 Slot that claims no profile."""
    return slot(**extra)


@asynccontextmanager
async def client_for(
    store: Store, settings: Settings, role: str, required: dict[str, Any]
) -> AsyncIterator[AsyncClient]:
    configured = settings.model_copy(update={"default_role": role, "required_profiles": required})
    app = create_app(configured, store=store)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5000))
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
            await put_schedules(c, "sched-1", "ExampleSchedule1")  # what the Slots reference
            yield c


def assert_needs_profile(r: httpx.Response, expression: str = "Slot.meta.profile") -> None:
    assert r.status_code == 422, r.text
    issues = r.json()["issue"]
    assert any(expression in i.get("expression", []) for i in issues), issues
    assert any(SLOT_PROFILE in i.get("diagnostics", "") for i in issues), issues


async def test_vendor_slot_must_claim_the_profile(store: Store, settings: Settings) -> None:
    async with client_for(store, settings, "vendor", VENDOR_SLOTS) as client:
        assert_needs_profile(await client.post("/Slot", json=plain_slot(), headers=H))
        assert (await client.post("/Slot", json=sas_slot(), headers=H)).status_code == 201
        # claimed but not satisfied: the profile validation answers
        r = await client.post("/Slot", json=sas_slot(status="busy"), headers=H)
        assert r.status_code == 422
        assert any("Slot.status" in i.get("expression", []) for i in r.json()["issue"])
        total = (await client.get("/Slot", params={"_summary": "count"})).json()["total"]
        assert total == 1
        # other types are not concerned
        r = await client.post("/Practitioner", json=practitioner(), headers=H)
        assert r.status_code == 201, r.text


async def test_other_roles_are_not_concerned(store: Store, settings: Settings) -> None:
    async with client_for(store, settings, "admin", VENDOR_SLOTS) as client:
        assert (await client.post("/Slot", json=plain_slot(), headers=H)).status_code == 201


async def test_star_applies_to_every_role(store: Store, settings: Settings) -> None:
    # admin: a role other than vendor that the access policy lets write Slots
    async with client_for(store, settings, "admin", {"*": {"Slot": [SLOT_PROFILE]}}) as client:
        assert_needs_profile(await client.post("/Slot", json=plain_slot(), headers=H))


async def test_every_write_interaction_is_checked(store: Store, settings: Settings) -> None:
    async with client_for(store, settings, "vendor", VENDOR_SLOTS) as client:
        assert_needs_profile(await client.put("/Slot/s1", json=plain_slot(id="s1"), headers=H))
        r = await client.put("/Slot/s1", json=sas_slot(id="s1"), headers=H)
        assert r.status_code == 201, r.text
        # conditional update
        url = "/Slot?identifier=urn:oid:1.2.250.1.213.1.4.10|slot-1"
        identifier = [{"system": "urn:oid:1.2.250.1.213.1.4.10", "value": "slot-1"}]
        assert_needs_profile(await client.put(url, json=plain_slot(), headers=H))
        r = await client.put(url, json=sas_slot(identifier=identifier), headers=H)
        assert r.status_code == 201, r.text
        # patch that drops the claim
        remove = [{"op": "remove", "path": "/meta/profile"}]
        r = await client.patch(
            "/Slot/s1", json=remove, headers={"Content-Type": "application/json-patch+json"}
        )
        assert_needs_profile(r)
        assert (await client.get("/Slot/s1")).json()["meta"]["profile"] == [SLOT_PROFILE]
        # transaction: the entry is named, nothing is stored
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"resource": sas_slot(), "request": {"method": "POST", "url": "Slot"}},
                {"resource": plain_slot(), "request": {"method": "POST", "url": "Slot"}},
                {
                    "resource": {
                        "resourceType": "Binary",
                        "contentType": "application/json-patch+json",
                        "data": base64.b64encode(orjson.dumps(remove)).decode(),
                    },
                    "request": {"method": "PATCH", "url": "Slot/s1"},
                },
            ],
        }
        before = (await client.get("/Slot", params={"_summary": "count"})).json()["total"]
        r = await client.post("/", json=bundle, headers=H)
        assert_needs_profile(r, "Bundle.entry[1].resource.meta.profile")
        bundle["entry"] = [bundle["entry"][0], bundle["entry"][2]]
        r = await client.post("/", json=bundle, headers=H)
        assert_needs_profile(r, "Bundle.entry[1].resource.meta.profile")
        after = (await client.get("/Slot", params={"_summary": "count"})).json()["total"]
        assert after == before
        # batch: each entry on its own
        bundle = copy.deepcopy(bundle)
        bundle["type"] = "batch"
        bundle["entry"][1] = {
            "resource": plain_slot(),
            "request": {"method": "POST", "url": "Slot"},
        }
        out = (await client.post("/", json=bundle, headers=H)).json()
        statuses = [e["response"]["status"] for e in out["entry"]]
        assert statuses[0] == "201 Created" and statuses[1].startswith("422"), statuses
        outcome = out["entry"][1]["response"]["outcome"]
        assert any("meta.profile" in e for i in outcome["issue"] for e in i.get("expression", []))


async def test_a_required_profile_the_server_does_not_know(
    store: Store, settings: Settings
) -> None:
    unknown = "http://example.org/StructureDefinition/NoSuchSlot"
    async with client_for(store, settings, "vendor", {"vendor": {"Slot": [unknown]}}) as client:
        body = plain_slot(meta={"profile": [unknown]})
        r = await client.post("/Slot", json=body, headers=H)
        assert r.status_code == 422
        assert any(
            i["code"] == "not-supported" and unknown in i["diagnostics"] for i in r.json()["issue"]
        )


async def test_the_role_comes_from_the_context(store: Store, settings: Settings) -> None:
    """``Context.acting_as`` is where the auth module will put each request's role."""
    configured = settings.model_copy(update={"required_profiles": VENDOR_SLOTS})
    ctx = make_context(configured, store)
    assert ctx.role == "admin"
    for res_id in ("sched-1", "ExampleSchedule1"):  # what the Slots reference
        await update.update(ctx, "Schedule", res_id, schedule(res_id))
    assert (await create.create(ctx, "Slot", plain_slot())).created
    with pytest.raises(errors.Unprocessable) as refused:
        await create.create(ctx.acting_as("vendor"), "Slot", plain_slot())
    assert refused.value.issues[0].expression == ("Slot.meta.profile",)
    assert (await create.create(ctx.acting_as("vendor"), "Slot", sas_slot())).created


async def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FHIR_REQUIRED_PROFILES", json.dumps(VENDOR_SLOTS))
    monkeypatch.setenv("FHIR_DEFAULT_ROLE", "vendor")
    monkeypatch.setenv("FHIR_UNIQUE_IDENTIFIERS", '["Practitioner", "Organization"]')
    settings = Settings()
    assert settings.required_profiles == VENDOR_SLOTS and settings.default_role == "vendor"
    assert settings.unique_identifiers == ["Practitioner", "Organization"]
    assert Settings.model_fields["conditional_update_id"].default == "lenient"
    for name, value in [
        ("FHIR_REQUIRED_PROFILES", '{"doctor": {"Slot": []}}'),
        ("FHIR_REQUIRED_PROFILES", '{"vendor": {"Patient": []}}'),
        ("FHIR_DEFAULT_ROLE", "doctor"),
        ("FHIR_UNIQUE_IDENTIFIERS", '["Patient"]'),
    ]:
        with monkeypatch.context() as m:
            m.setenv(name, value)
            with pytest.raises(ValidationError):
                Settings()
