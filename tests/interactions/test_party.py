"""The slot's vendor and the appointments booked on its slots (the *party*), through the
real app on both engines: vendor A pushes its slots, a regulator books one; A reads,
searches, vreads and follows the appointment's history and records what happened at the
practice (status only); vendor B sees none of it and changes nothing."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import select

from fhir_server.storage import schema
from fhir_server.storage.port import Store
from tests.api.test_policy import JSON_PATCH, Api
from tests.booking.conftest import api, at, booking, certificates, send, slot_status
from tests.interactions import party_data

__all__ = ["api", "certificates"]  # the booking tests' app (fixtures), both engines

VENDORS = {"vendor": "agenda-a", "vendor-b": "agenda-b"}


async def vendor_slot(api: Api, who: str, res_id: str, start: datetime) -> dict[str, Any]:
    """A free Slot pushed by vendor ``who`` on its own Schedule (``sched-<who>``)."""
    schedule = f"sched-{who}"
    sched = party_data.schedule(schedule, f"Dr {who}")
    r = await send(api, who, "PUT", f"/Schedule/{schedule}", sched)
    assert r.status_code in (200, 201), r.text
    slot = party_data.free_slot(res_id, schedule, start)
    r = await send(api, who, "PUT", f"/Slot/{res_id}", slot)
    assert r.status_code == 201, r.text
    stored: dict[str, Any] = r.json()
    return stored


async def booked(api: Api, slot: dict[str, Any]) -> dict[str, Any]:
    r = await send(api, "regulator", "POST", "/Appointment", booking(slot))
    assert r.status_code == 201, r.text
    appointment: dict[str, Any] = r.json()
    return appointment


def ids(bundle: dict[str, Any], res_type: str = "Appointment") -> list[str]:
    return sorted(
        e["resource"]["id"]
        for e in bundle.get("entry", [])
        if e["resource"]["resourceType"] == res_type
    )


async def search(api: Api, who: str, query: str, res_type: str = "Appointment") -> list[str]:
    r = await send(api, who, "GET", query)
    assert r.status_code == 200, r.text
    return ids(r.json(), res_type)


async def parties(store: Store, res_id: str) -> list[tuple[int, str | None]]:
    """(version, party) of every stored version of Appointment/``res_id``."""
    h = schema.history
    async with store.reading() as session:
        rows = await session.fetch(
            select(h.c.version, h.c.party)
            .where(h.c.res_type == "Appointment", h.c.res_id == res_id)
            .order_by(h.c.version)
        )
    return [(r.version, r.party) for r in rows]


def refused(r: Any, status: int, element: str | None = None, *words: str) -> None:
    assert r.status_code == status, r.text
    issue = r.json()["issue"][0]
    assert all(w in issue["diagnostics"] for w in words), issue
    if element is not None:
        assert issue.get("expression") == [element], issue


async def test_the_slots_vendor_reads_what_was_booked_on_them(api: Api, store: Store) -> None:
    slot = await vendor_slot(api, "vendor", "s-a", at(48))
    other = await vendor_slot(api, "vendor-b", "s-b", at(50))
    apt = await booked(api, slot)
    apt_b = await booked(api, other)
    url = f"/Appointment/{apt['id']}"
    assert await parties(store, apt["id"]) == [(1, "agenda-a")]

    r = await send(api, "vendor", "GET", url)
    assert r.status_code == 200 and r.json() == apt
    assert (await send(api, "vendor", "GET", f"{url}/_history/1")).status_code == 200
    r = await send(api, "vendor", "GET", f"{url}/_history")
    assert [e["resource"]["id"] for e in r.json()["entry"]] == [apt["id"]]
    assert await search(api, "vendor", "/Appointment?slot=Slot/s-a") == [apt["id"]]
    assert await search(api, "vendor", "/Appointment?status=booked") == [apt["id"]]
    r = await send(api, "vendor", "GET", "/Appointment/_history")
    assert [e["resource"]["id"] for e in r.json()["entry"]] == [apt["id"]]
    assert await search(api, "vendor", "/Slot?_revinclude=Appointment:slot") == [apt["id"]]
    found = await search(api, "vendor", "/Appointment?_include=Appointment:slot", "Slot")
    assert found == ["s-a"]

    # vendor B: its own booking only, A's is absent everywhere (404: not revealed)
    for path in (url, f"{url}/_history/1", f"{url}/_history"):
        assert (await send(api, "vendor-b", "GET", path)).status_code == 404, path
    assert await search(api, "vendor-b", "/Appointment?slot=Slot/s-a") == []
    assert await search(api, "vendor-b", "/Appointment?status=booked") == [apt_b["id"]]
    assert await search(api, "vendor-b", "/Slot?_revinclude=Appointment:slot") == [apt_b["id"]]
    r = await send(api, "vendor-b", "GET", "/_history")
    assert apt["id"] not in [e["resource"].get("id") for e in r.json().get("entry", [])]


async def test_the_party_records_what_happened_at_the_practice(api: Api) -> None:
    apt = await booked(api, await vendor_slot(api, "vendor", "s-a", at(48)))
    url = f"/Appointment/{apt['id']}"
    patch = [{"op": "replace", "path": "/status", "value": "noshow"}]
    r = await send(api, "vendor", "PATCH", url, patch, **{"Content-Type": JSON_PATCH})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "noshow"
    assert await slot_status(api, "s-a") == ("busy", "2")  # a missed appointment keeps it
    current = r.json()
    participants = [{**p, "status": "declined"} for p in current["participant"]]
    fulfilled = {**current, "status": "fulfilled", "comment": "vu", "participant": participants}
    r = await send(api, "vendor", "PUT", url, fulfilled)
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["comment"]) == ("fulfilled", "vu")
    assert r.json()["meta"]["versionId"] == "3"
    # the regulator (the owner) sees the party's changes in the history
    r = await send(api, "regulator", "GET", f"{url}/_history")
    assert [e["resource"]["status"] for e in r.json()["entry"]] == ["fulfilled", "noshow", "booked"]


async def test_the_partys_cancel_frees_a_future_slot(api: Api) -> None:
    slot = await vendor_slot(api, "vendor", "s-a", at(48))
    apt = await booked(api, slot)
    search = "/Slot?schedule=Schedule/sched-vendor&status=free&_include=Slot:schedule"
    assert await search_slots(api, search) == []
    cancel = {
        **apt,
        "status": "cancelled",
        "cancelationReason": {"text": "le patient a annulé"},
    }
    r = await send(api, "vendor", "PUT", f"/Appointment/{apt['id']}", cancel)
    assert r.status_code == 200, r.text
    assert await slot_status(api, "s-a") == ("free", "3")
    assert await search_slots(api, search) == ["s-a"]  # bookable again in the SAS search
    # still the party after the cancel: it reads it, and a regulator books the slot again
    assert (await send(api, "vendor", "GET", f"/Appointment/{apt['id']}")).status_code == 200
    again = await booked(api, slot)
    assert (await send(api, "vendor", "GET", f"/Appointment/{again['id']}")).status_code == 200


async def search_slots(api: Api, query: str) -> list[str]:
    return await search(api, "regulator", query, "Slot")


@pytest.mark.parametrize(
    ("change", "element"),
    [
        ({"start": "2031-01-01T10:00:00+00:00"}, "Appointment.start"),
        ({"end": "2031-01-01T10:20:00+00:00"}, "Appointment.end"),
        ({"slot": [{"reference": "Slot/elsewhere"}]}, "Appointment.slot"),
        ({"identifier": [{"system": "urn:x", "value": "1"}]}, "Appointment.identifier"),
        ({"status": "proposed"}, "Appointment.status"),
        ({"status": "entered-in-error"}, "Appointment.status"),
        ({"description": "autre chose"}, "Appointment.description"),
        ({"participant": [{"status": "accepted", "actor": {"display": "x"}}]}, None),
    ],
)
async def test_the_party_changes_nothing_else(
    api: Api, change: dict[str, Any], element: str | None
) -> None:
    apt = await booked(api, await vendor_slot(api, "vendor", "s-a", at(48)))
    url = f"/Appointment/{apt['id']}"
    r = await send(api, "vendor", "PUT", url, {**apt, **change})
    refused(r, 403, element or "Appointment.participant", "forbidden")
    ops = [{"op": "add", "path": f"/{k}", "value": v} for k, v in change.items()]
    r = await send(api, "vendor", "PATCH", url, ops, **{"Content-Type": JSON_PATCH})
    refused(r, 403, element or "Appointment.participant")
    assert (await send(api, "regulator", "GET", url)).json() == apt  # nothing changed
    assert await slot_status(api, "s-a") == ("busy", "2")


async def test_the_party_never_deletes_and_the_other_vendor_never_changes(api: Api) -> None:
    apt = await booked(api, await vendor_slot(api, "vendor", "s-a", at(48)))
    url = f"/Appointment/{apt['id']}"
    refused(await send(api, "vendor", "DELETE", url), 403, None, "may not delete")
    cancel = {**apt, "status": "cancelled"}
    refused(await send(api, "vendor-b", "PUT", url, cancel), 403, None, "another client")
    patch = [{"op": "replace", "path": "/status", "value": "cancelled"}]
    r = await send(api, "vendor-b", "PATCH", url, patch, **{"Content-Type": JSON_PATCH})
    assert r.status_code in (403, 404), r.text  # a patch reads first: B cannot see it
    assert (await send(api, "regulator", "GET", url)).json() == apt
    assert await slot_status(api, "s-a") == ("busy", "2")


async def test_the_party_rebooks_a_cancelled_appointment_only_on_a_free_slot(api: Api) -> None:
    slot = await vendor_slot(api, "vendor", "s-a", at(48))
    apt = await booked(api, slot)
    url = f"/Appointment/{apt['id']}"
    r = await send(api, "vendor", "PUT", url, {**apt, "status": "cancelled"})
    assert r.status_code == 200, r.text
    cancelled = r.json()
    # the patient comes back: the party books it again (the slot is free)
    r = await send(api, "vendor", "PUT", url, {**cancelled, "status": "booked"})
    assert r.status_code == 200, r.text
    assert (await slot_status(api, "s-a"))[0] == "busy"
    r = await send(api, "vendor", "PUT", url, {**r.json(), "status": "cancelled"})
    assert r.status_code == 200, r.text
    cancelled = r.json()
    await booked(api, slot)  # someone else took the slot meanwhile
    refused(await send(api, "vendor", "PUT", url, {**cancelled, "status": "booked"}), 409)
    assert (await send(api, "vendor", "GET", url)).json() == cancelled


async def test_a_reschedule_moves_the_party_and_old_versions_keep_theirs(
    api: Api, store: Store
) -> None:
    mine = await vendor_slot(api, "vendor", "s-a", at(48))
    theirs = await vendor_slot(api, "vendor-b", "s-b", at(50))
    apt = await booked(api, mine)
    url = f"/Appointment/{apt['id']}"
    moved = {**booking(theirs), "id": apt["id"]}
    r = await send(api, "regulator", "PUT", url, moved)
    assert r.status_code == 200, r.text
    assert await parties(store, apt["id"]) == [(1, "agenda-a"), (2, "agenda-b")]
    assert (await send(api, "vendor", "GET", url)).status_code == 404
    assert (await send(api, "vendor", "GET", f"{url}/_history/1")).status_code == 200
    assert (await send(api, "vendor", "GET", f"{url}/_history/2")).status_code == 404
    assert (await send(api, "vendor-b", "GET", url)).status_code == 200
    assert (await send(api, "vendor-b", "GET", f"{url}/_history/1")).status_code == 404
    assert await slot_status(api, "s-a") == ("free", "3")
    # the former party changes nothing any more
    r = await send(api, "vendor", "PUT", url, {**r.json(), "status": "cancelled"})
    refused(r, 403)


async def test_a_vendors_own_appointment_has_no_party(api: Api, store: Store) -> None:
    slot = await vendor_slot(api, "vendor", "s-a", at(48))
    r = await send(api, "vendor", "POST", "/Appointment", booking({**slot, "status": "busy"}))
    assert r.status_code == 201, r.text
    assert await parties(store, r.json()["id"]) == [(1, None)]
    assert await slot_status(api, "s-a") == ("free", "1")  # INT_R03: stored as sent


async def test_a_transaction_reads_what_the_party_may(api: Api) -> None:
    apt = await booked(api, await vendor_slot(api, "vendor", "s-a", at(48)))
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"request": {"method": "GET", "url": f"Appointment/{apt['id']}"}}],
    }
    r = await send(api, "vendor", "POST", "/", bundle)
    assert r.status_code == 200, r.text
    assert r.json()["entry"][0]["response"]["status"].startswith("200")
    r = await send(api, "vendor-b", "POST", "/", bundle)
    assert r.json()["entry"][0]["response"]["status"].startswith("404")


async def test_the_partys_conditional_update_and_transaction_entries(api: Api) -> None:
    slot = await vendor_slot(api, "vendor", "s-a", at(48))
    identifier = {"system": "urn:oid:1.2.250.1.999.9", "value": "rdv-1"}
    r = await send(api, "regulator", "POST", "/Appointment", booking(slot, identifier=[identifier]))
    assert r.status_code == 201, r.text
    apt = r.json()
    query = "/Appointment?identifier=urn:oid:1.2.250.1.999.9|rdv-1"
    r = await send(api, "vendor", "PUT", query, {**apt, "status": "arrived"})
    assert r.status_code == 200, r.text
    arrived = r.json()
    assert (arrived["id"], arrived["status"]) == (apt["id"], "arrived")
    # a transaction whose one entry moves the appointment is refused whole
    entries = [
        {
            "resource": {**arrived, "status": "fulfilled"},
            "request": {"method": "PUT", "url": f"Appointment/{apt['id']}"},
        },
        {
            "resource": {**arrived, "start": at(72).isoformat()},
            "request": {"method": "PUT", "url": f"Appointment/{apt['id']}"},
        },
    ]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    refused(await send(api, "vendor", "POST", "/", bundle), 403)
    assert (await send(api, "vendor", "GET", f"/Appointment/{apt['id']}")).json() == arrived
    bundle["entry"] = entries[:1]
    r = await send(api, "vendor", "POST", "/", bundle)
    assert r.status_code == 200, r.text
    r = await send(api, "vendor", "GET", f"/Appointment/{apt['id']}")
    assert r.json()["status"] == "fulfilled"
