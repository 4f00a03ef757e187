"""Booking through the API on both engines: the slot becomes busy with the Appointment, in
one transaction; every refusal is an OperationOutcome and changes nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.api.test_policy import JSON_PATCH, Api
from tests.booking.conftest import appointments, at, booking, put_slot, send, slot_status


def outcome(r: Any, status: int, *words: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    text = body["issue"][0]["diagnostics"]
    assert all(w in text for w in words), text


async def test_a_regulator_books_a_free_slot(api: Api) -> None:
    slot = await put_slot(api, "s1", at(48))
    r = await send(api, "regulator", "POST", "/Appointment", booking(slot))
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "booked"
    assert await slot_status(api, "s1") == ("busy", "2")
    # the Slot's history keeps both versions
    r = await send(api, "admin", "GET", "/Slot/s1/_history")
    assert [e["resource"]["status"] for e in r.json()["entry"]] == ["busy", "free"]


async def test_a_second_booking_of_the_slot_is_a_conflict(api: Api) -> None:
    slot = await put_slot(api, "s1", at(48))
    assert (await send(api, "regulator", "POST", "/Appointment", booking(slot))).status_code == 201
    r = await send(api, "platform", "POST", "/Appointment", booking(slot))
    outcome(r, 409, "Slot/s1 is busy")
    assert len(await appointments(api)) == 1
    assert await slot_status(api, "s1") == ("busy", "2")


@pytest.mark.parametrize(
    ("status", "words"),
    [
        ("busy", "is busy"),
        ("busy-unavailable", "is busy-unavailable"),
        ("entered-in-error", "is entered-in-error"),
    ],
)
async def test_a_slot_that_is_not_free_is_a_conflict(api: Api, status: str, words: str) -> None:
    slot = await put_slot(api, "s1", at(48), status=status)
    outcome(await send(api, "regulator", "POST", "/Appointment", booking(slot)), 409, words)
    assert await appointments(api) == []
    assert await slot_status(api, "s1") == (status, "1")


async def test_an_unknown_deleted_or_past_slot_is_a_conflict(api: Api) -> None:
    ghost = {"id": "nope", "start": at(48).isoformat(), "end": at(49).isoformat()}
    r = await send(api, "regulator", "POST", "/Appointment", booking(ghost))
    outcome(r, 409, "Slot/nope does not exist")
    gone = await put_slot(api, "gone", at(48))
    assert (await send(api, "admin", "DELETE", "/Slot/gone")).status_code in (200, 204)
    outcome(await send(api, "regulator", "POST", "/Appointment", booking(gone)), 409, "not exist")
    past = await put_slot(api, "past", at(-1))
    outcome(await send(api, "regulator", "POST", "/Appointment", booking(past)), 409, "started")
    assert await appointments(api) == []
    assert await slot_status(api, "past") == ("free", "1")


async def test_an_appointment_that_contradicts_its_slots_is_unprocessable(api: Api) -> None:
    a = await put_slot(api, "a", at(48))
    b = await put_slot(api, "b", at(48) + (at(1) - at(0)) / 3)  # right after a (20 min)
    far = await put_slot(api, "far", at(50))
    other = await put_slot(api, "other", at(48) + (at(1) - at(0)) / 3, schedule="sched-2")
    cases = [
        (booking(a, start=b["start"]), "Appointment.start"),
        (booking(a, end=b["end"]), "Appointment.end"),
        (booking(a, other), "different Schedules"),
        (booking(a, far), "not contiguous"),
    ]
    for payload, words in cases:
        outcome(await send(api, "regulator", "POST", "/Appointment", payload), 422, words)
    assert await appointments(api) == []
    for res_id in ("a", "b", "far", "other"):
        assert await slot_status(api, res_id) == ("free", "1")
    # two contiguous slots of one schedule make one appointment
    r = await send(api, "regulator", "POST", "/Appointment", booking(a, b))
    assert r.status_code == 201, r.text
    assert await slot_status(api, "a") == ("busy", "2")
    assert await slot_status(api, "b") == ("busy", "2")


async def test_who_must_book_a_slot(api: Api) -> None:
    r = await send(api, "regulator", "POST", "/Appointment", booking())
    outcome(r, 400, "Appointment.slot is required")
    # a vendor pushes its own appointments, without a slot of ours or with its busy slot
    assert (await send(api, "vendor", "POST", "/Appointment", booking())).status_code == 201
    slot = await put_slot(api, "s1", at(48), status="busy")
    assert (await send(api, "vendor", "POST", "/Appointment", booking(slot))).status_code == 201
    assert await slot_status(api, "s1") == ("busy", "1")  # stored as sent: no slot changed
    assert (await send(api, "admin", "POST", "/Appointment", booking())).status_code == 201


async def test_cancel_by_put_or_patch_and_an_admins_delete_free_the_slot(api: Api) -> None:
    slot = await put_slot(api, "s1", at(48))
    for way in ("PUT", "PATCH", "DELETE"):
        r = await send(api, "regulator", "POST", "/Appointment", booking(slot))
        assert r.status_code == 201, r.text
        apt = r.json()
        assert (await slot_status(api, "s1"))[0] == "busy"
        url = f"/Appointment/{apt['id']}"
        if way == "PUT":
            r = await send(api, "regulator", "PUT", url, {**apt, "status": "cancelled"})
        elif way == "PATCH":
            patch = [{"op": "replace", "path": "/status", "value": "cancelled"}]
            r = await send(api, "regulator", "PATCH", url, patch, **{"Content-Type": JSON_PATCH})
        else:
            r = await send(api, "admin", "DELETE", url)  # clients cancel, never delete
        assert r.status_code in (200, 204), r.text
        assert (await slot_status(api, "s1"))[0] == "free", way
    assert (await slot_status(api, "s1"))[1] == "7"  # three bookings, three cancels


async def test_a_past_slot_stays_busy_on_cancel(api: Api) -> None:
    slot = await put_slot(api, "s1", at(48))
    r = await send(api, "regulator", "POST", "/Appointment", booking(slot))
    apt = r.json()
    # the time passes: the slot is now in the past (moved by the admin, still busy)
    await put_slot(api, "s1", at(-2), status="busy")
    r = await send(
        api, "regulator", "PUT", f"/Appointment/{apt['id']}", {**apt, "status": "cancelled"}
    )
    assert r.status_code == 200, r.text
    assert (await slot_status(api, "s1"))[0] == "busy"


async def test_a_reschedule_moves_atomically(api: Api) -> None:
    old = await put_slot(api, "old", at(48))
    new = await put_slot(api, "new", at(72))
    taken = await put_slot(api, "taken", at(96))
    apt = (await send(api, "regulator", "POST", "/Appointment", booking(old))).json()
    await send(api, "platform", "POST", "/Appointment", booking(taken))
    url = f"/Appointment/{apt['id']}"
    # to a busy slot: refused, nothing moved
    moved = {**booking(taken), "id": apt["id"]}
    outcome(await send(api, "regulator", "PUT", url, moved), 409, "Slot/taken is busy")
    assert await slot_status(api, "old") == ("busy", "2")
    r = await send(api, "regulator", "PUT", url, {**booking(new), "id": apt["id"]})
    assert r.status_code == 200, r.text
    assert (await slot_status(api, "old"))[0] == "free"
    assert (await slot_status(api, "new"))[0] == "busy"


@pytest.mark.parametrize("status", ["fulfilled", "noshow"])
async def test_fulfilled_and_noshow_keep_the_slot(api: Api, status: str) -> None:
    slot = await put_slot(api, "s1", at(48))
    apt = (await send(api, "regulator", "POST", "/Appointment", booking(slot))).json()
    r = await send(api, "regulator", "PUT", f"/Appointment/{apt['id']}", {**apt, "status": status})
    assert r.status_code == 200, r.text
    assert await slot_status(api, "s1") == ("busy", "2")
    r = await send(api, "admin", "GET", f"/Appointment/{apt['id']}/_history")
    assert [e["resource"]["status"] for e in r.json()["entry"]] == [status, "booked"]


async def test_cancel_of_another_callers_appointment_is_forbidden(api: Api) -> None:
    slot = await put_slot(api, "s1", at(48))
    apt = (await send(api, "platform", "POST", "/Appointment", booking(slot))).json()
    url = f"/Appointment/{apt['id']}"
    r = await send(api, "regulator", "PUT", url, {**apt, "status": "cancelled"})
    outcome(r, 403, "forbidden")
    patch = [{"op": "replace", "path": "/status", "value": "cancelled"}]
    r = await send(api, "regulator", "PATCH", url, patch, **{"Content-Type": JSON_PATCH})
    outcome(r, 403, "forbidden")
    outcome(await send(api, "regulator", "DELETE", url), 403, "forbidden")
    assert await slot_status(api, "s1") == ("busy", "2")


async def test_a_transaction_books_all_or_nothing(api: Api) -> None:
    a = await put_slot(api, "a", at(48))
    b = await put_slot(api, "b", at(72))

    def entry(payload: dict[str, Any]) -> dict[str, Any]:
        return {"resource": payload, "request": {"method": "POST", "url": "Appointment"}}

    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [entry(booking(a)), entry(booking(b)), entry(booking(a))],
    }
    outcome(await send(api, "regulator", "POST", "/", bundle), 409, "Slot/a is busy")
    assert await appointments(api) == []
    assert await slot_status(api, "a") == ("free", "1")
    assert await slot_status(api, "b") == ("free", "1")
    bundle["entry"] = bundle["entry"][:2]
    r = await send(api, "regulator", "POST", "/", bundle)
    assert r.status_code == 200, r.text
    assert (await slot_status(api, "a"))[0] == (await slot_status(api, "b"))[0] == "busy"


async def test_the_next_sas_search_no_longer_shows_the_slot(api: Api) -> None:
    slots = [await put_slot(api, f"s{i}", at(24 + i)) for i in range(3)]
    search = (
        f"/Slot?schedule=Schedule/sched&start=ge{at(0).date().isoformat()}"
        f"&start=le{at(24 * 5).date().isoformat()}&status=free"
        "&_include=Slot:schedule&_include:iterate=Schedule:actor"
    )

    async def found() -> list[str]:
        r = await send(api, "regulator", "GET", search)
        assert r.status_code == 200, r.text
        entries = r.json().get("entry", [])
        return sorted(
            e["resource"]["id"] for e in entries if e["resource"]["resourceType"] == "Slot"
        )

    assert await found() == ["s0", "s1", "s2"]  # the agenda is cached now
    await send(api, "regulator", "POST", "/Appointment", booking(slots[1]))
    assert await found() == ["s0", "s2"]


async def test_concurrent_bookings_of_one_slot_make_one_appointment(api: Api) -> None:
    """50 concurrent bookings (asyncio, in process), three rounds with a cancel between."""
    slot = await put_slot(api, "hot", at(48))
    for round_ in range(3):
        results = await asyncio.gather(
            *(send(api, "regulator", "POST", "/Appointment", booking(slot)) for _ in range(50))
        )
        codes = sorted(r.status_code for r in results)
        assert codes == [201] + [409] * 49, [r.text for r in results if r.status_code != 409]
        booked = [a for a in await appointments(api) if a["status"] == "booked"]
        assert len(booked) == 1
        assert (await slot_status(api, "hot"))[0] == "busy"
        won = next(r for r in results if r.status_code == 201).json()
        url = f"/Appointment/{won['id']}"
        r = await send(api, "regulator", "PUT", url, {**won, "status": "cancelled"})
        assert r.status_code == 200, r.text
        assert await slot_status(api, "hot") == ("free", str(3 + 2 * round_))
