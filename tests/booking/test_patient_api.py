"""The minimal patient data through the API, on both engines: a booking holding the one
contained Patient is stored with it; any other patient data is a 422 naming each offending
element, and nothing changes (no Appointment, the slot still free)."""

from __future__ import annotations

import copy
import json
from datetime import date
from typing import Any

import httpx
import pytest

from fhir_server.app import create_app
from fhir_server.booking.patient import PatientData
from fhir_server.settings import Settings
from fhir_server.storage.port import Store
from tests.api.conftest import BASE, FHIR, PACKAGES
from tests.api.test_policy import JSON_PATCH, Api
from tests.booking.conftest import appointments, at, booking, put_slot, send, slot_status

PROFILE = "http://sas.fr/fhir/StructureDefinition/FrAppointmentSAS"
EXAMPLE = PACKAGES / "ans.fhir.fr.sas#1.2.0" / "package" / "example" / "Appointment-1.json"
DATA = PatientData("Dupont", "Marie", date(1980, 5, 4), "+33612345678")


def with_patient(slot: dict[str, Any], resource: dict[str, Any] | None = None) -> dict[str, Any]:
    body = booking(slot)
    body["contained"] = [resource if resource is not None else DATA.resource()]
    body["participant"].append(PatientData.participant())
    return body


def named(r: Any) -> set[str]:
    assert r.status_code == 422, r.text
    outcome = r.json()
    assert outcome["resourceType"] == "OperationOutcome"
    return {e for issue in outcome["issue"] for e in issue.get("expression", [])}


@pytest.mark.parametrize("who", ["regulator", "platform"])
async def test_a_booking_keeps_its_minimal_patient(api: Api, who: str) -> None:
    slot = await put_slot(api, "s1", at(48))
    r = await send(api, who, "POST", "/Appointment", with_patient(slot))
    assert r.status_code == 201, r.text
    stored = (await send(api, "admin", "GET", f"/Appointment/{r.json()['id']}")).json()
    assert stored["contained"] == [DATA.resource()]
    assert PatientData.participant() in stored["participant"]
    assert await slot_status(api, "s1") == ("busy", "2")


def _address(p: dict[str, Any]) -> None:
    p["address"] = [{"city": "Agen"}]


def _nir(p: dict[str, Any]) -> None:
    p["identifier"] = [{"system": "urn:oid:1.2.250.1.213.1.4.8", "value": "180057512345678"}]


def _future(p: dict[str, Any]) -> None:
    p["birthDate"] = "2999-01-01"


def _national_phone(p: dict[str, Any]) -> None:
    p["telecom"] = [{"system": "phone", "value": "06 12 34 56 78"}]


def _empty_family(p: dict[str, Any]) -> None:
    p["name"] = [{"family": " ", "given": ["Marie"]}]


def _email(p: dict[str, Any]) -> None:
    p["telecom"].append({"system": "email", "value": "marie@example.org"})


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (_address, {"Appointment.contained[0].address"}),
        (_nir, {"Appointment.contained[0].identifier"}),
        (_future, {"Appointment.contained[0].birthDate"}),
        (_national_phone, {"Appointment.contained[0].telecom[0].value"}),
        (_empty_family, {"Appointment.contained[0].name[0].family"}),
        (_email, {"Appointment.contained[0].telecom"}),
    ],
)
async def test_more_or_wrong_patient_data_is_refused(
    api: Api, change: Any, where: set[str]
) -> None:
    slot = await put_slot(api, "s1", at(48))
    resource = DATA.resource()
    change(resource)
    r = await send(api, "regulator", "POST", "/Appointment", with_patient(slot, resource))
    assert named(r) == where
    assert await appointments(api) == []
    assert await slot_status(api, "s1") == ("free", "1")


async def test_each_offending_element_is_named_at_once(api: Api) -> None:
    slot = await put_slot(api, "s1", at(48))
    resource = DATA.resource()
    _address(resource)
    _nir(resource)
    body = with_patient(slot, resource)
    body["contained"].append({"resourceType": "Practitioner", "id": "x"})
    body["participant"].append({"actor": {"reference": "#x"}, "status": "accepted"})
    r = await send(api, "regulator", "POST", "/Appointment", body)
    assert named(r) == {
        "Appointment.contained[0].address",
        "Appointment.contained[0].identifier",
        "Appointment.contained[1]",
        "Appointment.participant[2].actor.reference",
    }
    assert await appointments(api) == []
    assert await slot_status(api, "s1") == ("free", "1")


async def test_an_unreferenced_patient_is_refused(api: Api) -> None:
    slot = await put_slot(api, "s1", at(48))
    body = with_patient(slot)
    body["participant"].pop()
    assert named(await send(api, "regulator", "POST", "/Appointment", body))
    assert await appointments(api) == []


async def test_an_update_or_patch_adding_data_changes_nothing(api: Api) -> None:
    slot = await put_slot(api, "s1", at(48))
    r = await send(api, "regulator", "POST", "/Appointment", with_patient(slot))
    assert r.status_code == 201, r.text
    stored = r.json()
    res_id, version = stored["id"], stored["meta"]["versionId"]
    changed = copy.deepcopy(stored)
    _address(changed["contained"][0])
    r = await send(api, "regulator", "PUT", f"/Appointment/{res_id}", changed)
    assert named(r) == {"Appointment.contained[0].address"}
    patch = [{"op": "add", "path": "/contained/0/active", "value": True}]
    r = await send(
        api, "regulator", "PATCH", f"/Appointment/{res_id}", patch, **{"Content-Type": JSON_PATCH}
    )
    assert named(r) == {"Appointment.contained[0].active"}
    now = (await send(api, "admin", "GET", f"/Appointment/{res_id}")).json()
    assert now["meta"]["versionId"] == version and now["contained"] == [DATA.resource()]
    # the patient's data may be corrected within the set
    fixed = copy.deepcopy(stored)
    fixed["contained"][0]["telecom"][0]["value"] = "+33700000000"
    r = await send(api, "regulator", "PUT", f"/Appointment/{res_id}", fixed)
    assert r.status_code == 200, r.text
    assert await slot_status(api, "s1") == ("busy", "2")


async def test_a_contained_patient_passes_a_required_fr_appointment_sas(store: Store) -> None:
    """Under ``FHIR_REQUIRED_PROFILES`` (FrAppointmentSAS required of the platform's
    Appointments), the guide's example with the minimal patient passes; with more, the
    patient rule still names the element."""
    if not EXAMPLE.is_file():
        pytest.skip(f"SAS example not found at {EXAMPLE}")
    settings = Settings(
        package_path=PACKAGES,
        audit=False,
        default_role="platform",
        required_profiles={"platform": {"Appointment": [PROFILE]}},
    )
    example: dict[str, Any] = json.loads(EXAMPLE.read_text())
    example.pop("id")
    example.pop("text", None)
    example["contained"] = [DATA.resource()]
    example["participant"].append(PatientData.participant())
    app = create_app(settings, store=store)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5000))
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
            more = copy.deepcopy(example)
            _address(more["contained"][0])
            r = await c.post("/Appointment", json=more, headers={"Content-Type": FHIR})
            assert named(r) == {"Appointment.contained[0].address"}
            unreferenced = copy.deepcopy(example)
            unreferenced["participant"].pop()
            r = await c.post("/Appointment", json=unreferenced, headers={"Content-Type": FHIR})
            assert r.status_code == 422, r.text  # dom-3 (the profile) or the rule
            r = await c.post("/Appointment", json=example, headers={"Content-Type": FHIR})
            assert r.status_code == 201, r.text
            assert r.json()["contained"] == [DATA.resource()]
            r = await c.get("/Appointment")
            assert r.json()["total"] == 1
