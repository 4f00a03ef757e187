"""FrAppointmentSAS content added to a booking: the operator and the practitioner by IDNPS."""

from __future__ import annotations

from typing import Any

from fhir_server.booking import sas_content
from tests.api.test_policy import Api
from tests.booking.conftest import at, booking, put_slot, send


def test_the_operator_and_practitioner_are_added_once() -> None:
    apt: dict[str, Any] = {"participant": [{"status": "accepted"}]}
    sas_content.add_operator(apt, sas_content.idnps_of_person("10001234567"))
    sas_content.add_operator(apt, "other")  # the first one stays
    assert apt["extension"] == [
        {
            "url": sas_content.OPERATOR_URL,
            "valueReference": {"identifier": sas_content.identifier("810001234567")},
        }
    ]
    sas_content.add_practitioner(apt, "810009999999")
    sas_content.add_practitioner(apt, "810008888888")
    actors = [p.get("actor") for p in apt["participant"]]
    assert actors == [None, {"identifier": sas_content.identifier("810009999999")}]
    assert sas_content.idnps_of_person("ADELI-1") == "ADELI-1"


async def test_a_booking_names_the_slots_practitioner_by_idnps(api: Api) -> None:
    practitioner = {
        "resourceType": "Practitioner",
        "id": "dr",
        "identifier": [{"system": sas_content.IDNPS_SYSTEM, "value": "810001234567"}],
    }
    assert (await send(api, "admin", "PUT", "/Practitioner/dr", practitioner)).status_code == 201
    schedule = {
        "resourceType": "Schedule",
        "id": "with-dr",
        "actor": [{"reference": "Practitioner/dr"}],
    }
    assert (await send(api, "admin", "PUT", "/Schedule/with-dr", schedule)).status_code == 201
    slot = await put_slot(api, "s1", at(48), schedule="with-dr")
    r = await send(api, "regulator", "POST", "/Appointment", booking(slot))
    assert r.status_code == 201, r.text
    actors = [p.get("actor", {}) for p in r.json()["participant"]]
    assert {"identifier": sas_content.identifier("810001234567")} in actors
    # a client that names the practitioner itself is kept as sent
    other = await put_slot(api, "s2", at(72), schedule="with-dr")
    mine = booking(other)
    mine["participant"].append(
        {"actor": {"identifier": sas_content.identifier("8100X")}, "status": "accepted"}
    )
    r = await send(api, "regulator", "POST", "/Appointment", mine)
    assert r.status_code == 201, r.text
    assert r.json()["participant"] == mine["participant"]
