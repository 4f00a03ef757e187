"""Platform side (INT_R03): vendors push their Appointments (POST, ``PUT
/Appointment?identifier=``) validated against FrAppointmentSAS when the platform requires it
(``FHIR_REQUIRED_PROFILES``), every status change kept in the history."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from fhir_server.app import create_app
from fhir_server.settings import Settings
from fhir_server.storage.port import Store
from tests.api.conftest import BASE, FHIR, PACKAGES

pytestmark = pytest.mark.skipif(not PACKAGES.is_dir(), reason="FHIR package cache not found")
PROFILE = "http://sas.fr/fhir/StructureDefinition/FrAppointmentSAS"
EXAMPLE = PACKAGES / "ans.fhir.fr.sas#1.2.0" / "package" / "example" / "Appointment-1.json"
H = {"Content-Type": FHIR}


def sas_appointment(**extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(EXAMPLE.read_text())
    body.pop("id")
    body.pop("text", None)
    body.update(extra)
    return body


async def test_vendor_pushes_are_validated_and_every_status_is_kept(store: Store) -> None:
    settings = Settings(
        package_path=PACKAGES,
        audit=False,
        default_role="vendor",
        required_profiles={"vendor": {"Appointment": [PROFILE]}},
    )
    app = create_app(settings, store=store)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5000))
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
            ident = sas_appointment()["identifier"][0]
            url = f"/Appointment?identifier={ident['system']}|{ident['value']}"
            # without the operator extension the profile is not satisfied: 422, nothing stored
            bad = sas_appointment()
            bad.pop("extension")
            r = await c.put(url, json=bad, headers=H)
            assert r.status_code == 422, r.text
            r = await c.get("/Appointment")
            assert r.json().get("total", 0) == 0
            for status in ("booked", "cancelled"):
                r = await c.put(url, json=sas_appointment(status=status), headers=H)
                assert r.status_code in (200, 201), r.text
            res_id = r.json()["id"]
            r = await c.get(f"/Appointment/{res_id}/_history")
            assert [e["resource"]["status"] for e in r.json()["entry"]] == ["cancelled", "booked"]
