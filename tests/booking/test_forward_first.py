"""The owner of a remote slot is asked BEFORE the write transaction (owner_first.py), on
SQLite and PostgreSQL: while it takes its time other writes go on (a Slot write of the very
slot being booked, a plain Appointment); a local write failing after the owner confirmed
undoes the booking at the owner and our client gets the local error."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import orjson
import pytest

from fhir_server.booking.forward import Limits
from fhir_server.booking.remote import RemoteBooking
from fhir_server.core.caller import SYSTEM
from fhir_server.core.errors import FhirError
from fhir_server.interactions import transaction
from fhir_server.interactions.context import Context
from fhir_server.interactions.create import create
from fhir_server.interactions.delete import delete
from fhir_server.interactions.update import update
from fhir_server.storage.port import Store, Stored, WriteSession
from tests.booking.test_forward_booking import appointments, booking, pulled, slot_status
from tests.booking.test_forward_pulled import ctx
from tests.booking.vendor import Vendor

__all__ = ["ctx", "pulled"]  # the fixtures, imported for these tests
KEY = "urn:oid:1.2.250.1.213.3.6.99|"
PATIENT = Limits(timeout=5.0, retries=0, deadline=6.0, backoff=0.02)  # waits for a slow owner


def patient(ctx: Context) -> Context:
    forwarder = ctx.forwarder
    assert isinstance(forwarder, RemoteBooking)
    return replace(ctx, forwarder=RemoteBooking(replace(forwarder.owners, limits=PATIENT)))


async def until_asked(vendor: Vendor, method: str = "POST") -> None:
    """Until the vendor has the request (bounded: 500 x 20 ms)."""
    for _ in range(500):
        if vendor.count(method) >= 1:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"the vendor never got the {method}")


async def slot_write(ctx: Context, store: Store, rid: str, **changes: Any) -> None:
    stored = await store.read("Slot", f"agenda-slot-{rid}", SYSTEM)
    assert stored is not None
    body = orjson.loads(stored.content) | changes
    await update(ctx.acting_for(SYSTEM), "Slot", f"agenda-slot-{rid}", body)


def plain_appointment() -> dict[str, Any]:
    return {
        "resourceType": "Appointment",
        "status": "proposed",
        "participant": [{"status": "needs-action", "actor": {"display": "someone"}}],
    }


async def test_other_writes_do_not_wait_for_a_slow_owner(
    pulled: tuple[Context, Vendor], store: Store
) -> None:
    ctx, vendor = pulled
    ctx = patient(ctx)
    vendor.script, vendor.delay = ["slow"], 2.0  # booked at once, answered 2 s later
    finished: list[str] = []

    async def remote() -> None:
        await create(ctx, "Appointment", booking("v-1", "slow"))
        finished.append("remote booking")

    async def local() -> None:
        await until_asked(vendor)
        # the very slot being booked (its row would be locked) and another resource
        await slot_write(ctx, store, "v-1", comment="edited while its owner thinks")
        await create(ctx.acting_for(SYSTEM), "Appointment", plain_appointment())
        finished.append("local writes")

    async with asyncio.timeout(30):
        await asyncio.gather(remote(), local())
    assert finished == ["local writes", "remote booking"]
    assert await slot_status(store, "v-1") == "busy" and vendor.created == 1
    assert await appointments(store) == 2


async def test_the_slot_gone_here_meanwhile_is_undone_at_the_owner(
    pulled: tuple[Context, Vendor], store: Store
) -> None:
    ctx, vendor = pulled
    ctx = patient(ctx)
    vendor.script, vendor.delay = ["slow"], 1.0

    async def meanwhile() -> None:  # the slot goes here while its owner answers
        await until_asked(vendor)
        await delete(ctx.acting_for(SYSTEM), "Slot", "agenda-slot-v-1")

    async def remote() -> FhirError:
        with pytest.raises(FhirError) as caught:
            await create(ctx, "Appointment", booking("v-1", "late"))
        return caught.value

    async with asyncio.timeout(30):
        error, _ = await asyncio.gather(remote(), meanwhile())
    assert error.status == 409 and "Slot/agenda-slot-v-1" in str(error)
    assert vendor.count("PUT") == 1 and vendor.taken == {}  # the undo: cancelled there
    assert vendor.appointments[KEY + "late"]["status"] == "cancelled"
    assert await appointments(store) == 0


class Failing:
    """A write hook that fails the transaction when the Appointment is written."""

    async def wrote(self, session: WriteSession, stored: Stored, previous: Stored | None) -> None:
        if stored.res_type == "Appointment":
            raise RuntimeError("the local write failed")


async def test_a_local_failure_after_the_confirmation_is_undone_at_the_owner(
    pulled: tuple[Context, Vendor], store: Store
) -> None:
    ctx, vendor = pulled
    failing = replace(ctx, write_hooks=(*ctx.write_hooks, Failing()))
    with pytest.raises(RuntimeError, match="the local write failed"):
        await create(failing, "Appointment", booking("v-2", "fails"))
    assert vendor.created == 1 and vendor.count("PUT") == 1 and vendor.taken == {}
    assert vendor.appointments[KEY + "fails"]["status"] == "cancelled"
    assert await slot_status(store, "v-2") == "free" and await appointments(store) == 0
    # nothing left behind: the same booking then goes through
    await create(ctx, "Appointment", booking("v-2", "again"))
    assert vendor.taken == {"v-2": KEY + "again"}
    assert await slot_status(store, "v-2") == "busy"


def bundle(*bodies: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": b, "request": {"method": "POST", "url": "Appointment"}} for b in bodies
        ],
    }


async def test_a_transaction_books_at_the_owner_first(
    pulled: tuple[Context, Vendor], store: Store
) -> None:
    ctx, vendor = pulled
    answer = orjson.loads(
        await transaction.process(ctx, bundle(booking("v-1", "t1"), booking("v-2", "t2")), "")
    )
    assert [e["response"]["status"][:3] for e in answer["entry"]] == ["201", "201"]
    assert vendor.count("POST") == 2 and set(vendor.taken) == {"v-1", "v-2"}
    assert await slot_status(store, "v-1") == "busy" and await slot_status(store, "v-2") == "busy"


async def test_a_failed_transaction_undoes_what_the_owner_confirmed(
    pulled: tuple[Context, Vendor], store: Store
) -> None:
    ctx, vendor = pulled
    # the second entry takes the slot the first took: 409 in the transaction
    with pytest.raises(FhirError) as caught:
        await transaction.process(ctx, bundle(booking("v-1", "t3"), booking("v-1", "t4")), "")
    assert caught.value.status == 409
    assert vendor.count("POST") == 1 and vendor.taken == {}
    assert vendor.appointments[KEY + "t3"]["status"] == "cancelled"
    assert await slot_status(store, "v-1") == "free" and await appointments(store) == 0
