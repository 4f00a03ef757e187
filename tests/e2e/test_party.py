"""The slot's vendor and its appointments over real HTTP: a ``fhir-server serve`` process
over HTTPS with mutual TLS on loopback, two vendors and a regulator known by their client
certificates, on SQLite and PostgreSQL.

Vendor A pushes a slot, the regulator books it: A reads and finds the appointment, B does
not; A records a no-show, cannot move it, delete it nor touch B's; A cancels it and the
slot is free again in the regulator's SAS search.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from fhir_server.core.fhirtime import utcnow
from tests.booking.conftest import booking
from tests.e2e.test_policy import FHIR, client, server
from tests.interactions import party_data

pytestmark = pytest.mark.e2e
__all__ = ["server"]  # the fixture: the mTLS server of the policy test (editeur-a, -b)
JSON_PATCH = {"Content-Type": "application/json-patch+json"}


def push_slot(vendor: httpx.Client, schedule: str, res_id: str, hours: int) -> dict[str, Any]:
    sched = party_data.schedule(schedule)
    assert vendor.put(f"/Schedule/{schedule}", json=sched, headers=FHIR).status_code in (200, 201)
    start = utcnow().replace(second=0, microsecond=0) + timedelta(hours=hours)
    slot = party_data.free_slot(res_id, schedule, start)
    r = vendor.put(f"/Slot/{res_id}", json=slot, headers=FHIR)
    assert r.status_code == 201, r.text
    stored: dict[str, Any] = r.json()
    return stored


def book(regulator: httpx.Client, slot: dict[str, Any]) -> dict[str, Any]:
    r = regulator.post("/Appointment", json=booking(slot), headers=FHIR)
    assert r.status_code == 201, r.text
    booked: dict[str, Any] = r.json()
    return booked


def found(c: httpx.Client, query: str, res_type: str = "Appointment") -> list[str]:
    r = c.get(query)
    assert r.status_code == 200, r.text
    return [
        e["resource"]["id"]
        for e in r.json().get("entry", [])
        if e["resource"]["resourceType"] == res_type
    ]


def test_the_slots_vendor_follows_its_appointment_over_mutual_tls(server: Any) -> None:
    with (
        client(server, "editeur-a") as a,
        client(server, "editeur-b") as b,
        client(server, "regulation") as regulator,
    ):
        slot = push_slot(a, "sched-a", "slot-a", 48)
        push_slot(b, "sched-b", "slot-b", 50)
        apt = book(regulator, slot)
        url = f"/Appointment/{apt['id']}"
        assert a.get(url).json() == apt
        assert found(a, "/Appointment?slot=Slot/slot-a") == [apt["id"]]
        assert found(a, "/Appointment?status=booked") == [apt["id"]]
        assert b.get(url).status_code == 404
        assert found(b, "/Appointment?status=booked") == []

        r = a.patch(
            url, json=[{"op": "replace", "path": "/status", "value": "noshow"}], headers=JSON_PATCH
        )
        assert r.status_code == 200 and r.json()["status"] == "noshow", r.text
        current = r.json()

        r = a.put(url, json={**current, "start": slot["end"]}, headers=FHIR)
        assert r.status_code == 403, r.text
        assert r.json()["issue"][0]["expression"] == ["Appointment.start"]
        assert a.delete(url).status_code == 403
        r = b.put(url, json={**current, "status": "cancelled"}, headers=FHIR)
        assert r.status_code == 403, r.text
        assert a.get(url).json() == current  # nothing changed by the refusals

        search = (
            "/Slot?schedule=Schedule/sched-a&status=free"
            "&_include=Slot:schedule&_include:iterate=Schedule:actor"
        )
        assert found(regulator, search, "Slot") == []
        r = a.put(url, json={**current, "status": "cancelled"}, headers=FHIR)
        assert r.status_code == 200, r.text
        assert found(regulator, search, "Slot") == ["slot-a"]
        r = regulator.get(f"{url}/_history")
        statuses = [e["resource"]["status"] for e in r.json()["entry"]]
        assert statuses == ["cancelled", "noshow", "booked"]
