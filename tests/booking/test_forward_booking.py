"""Booking a pulled slot through the interactions (SQLite and PostgreSQL) with a real
loopback vendor as its owner: booked at the owner first, then here; the owner's refusal is
our 409 and nothing is stored; retries book once; an owner that hangs or refuses
connections stores nothing; a cancel is forwarded."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import orjson
import pytest
from sqlalchemy import text

from fhir_server.booking.forward import Limits
from fhir_server.booking.remote import RemoteBooking
from fhir_server.core.caller import SYSTEM, Caller
from fhir_server.core.errors import FhirError
from fhir_server.ingest.pull.owners import remote_owners
from fhir_server.ingest.pull.state import engine_of
from fhir_server.interactions.context import Context
from fhir_server.interactions.create import create
from fhir_server.interactions.update import update
from fhir_server.storage.port import Store
from tests.booking.pulled import pull_two_slots, tomorrow
from tests.booking.test_forward import appointment
from tests.booking.test_forward_pulled import ctx
from tests.booking.vendor import Vendor, vendor_server

__all__ = ["ctx"]  # the fixture, imported for these tests
LIMITS = Limits(timeout=1.0, retries=2, deadline=3.0, backoff=0.02)
REGULATOR = Caller(role="regulator", client_id="regul-app", user_id="3456780581")


@pytest.fixture
async def pulled(ctx: Context, store: Store) -> AsyncIterator[tuple[Context, Vendor]]:
    """Two free slots of vendor ``agenda`` pulled from the loopback vendor, and a
    regulator's context that forwards their bookings there."""
    with vendor_server() as vendor:
        source = await pull_two_slots(ctx, store, vendor)
        forwarding = replace(ctx, forwarder=RemoteBooking(remote_owners([source], LIMITS)))
        yield forwarding.acting_for(REGULATOR), vendor


async def slot_status(store: Store, rid: str) -> str:
    stored = await store.read("Slot", f"agenda-slot-{rid}", SYSTEM)
    assert stored is not None
    return str(orjson.loads(stored.content)["status"])


async def appointments(store: Store) -> int:
    async with engine_of(store).connect() as conn:
        found = await conn.execute(
            text("SELECT count(*) FROM resources WHERE res_type = 'Appointment'")
        )
        return int(found.scalar_one())


def booking(rid: str, key: str, **extra: Any) -> dict[str, Any]:
    start = tomorrow(9 if rid == "v-1" else 10)
    body = appointment(
        identifier=[{"system": "urn:oid:1.2.250.1.213.3.6.99", "value": key}],
        slot=[{"reference": f"Slot/agenda-slot-{rid}"}],
        start=start.isoformat(timespec="milliseconds"),
        end=start.replace(minute=15).isoformat(timespec="milliseconds"),
        **extra,
    )
    del body["id"]
    body["meta"] = {"profile": body["meta"]["profile"]}
    body["participant"] = body["participant"][:1]
    del body["participant"][0]["actor"]["reference"]
    return body


async def test_booked_at_the_owner_then_here(pulled: tuple[Context, Vendor], store: Store) -> None:
    ctx, vendor = pulled
    result = await create(ctx, "Appointment", booking("v-1", "k1"))
    assert result.created
    assert await slot_status(store, "v-1") == "busy"
    assert list(vendor.taken) == ["v-1"] and vendor.created == 1
    sent = vendor.appointments["urn:oid:1.2.250.1.213.3.6.99|k1"]
    assert sent["slot"] == [{"reference": "Slot/v-1"}]
    # a second booking of the slot: refused here already (busy), the owner not asked
    with pytest.raises(FhirError) as caught:
        await create(ctx, "Appointment", booking("v-1", "k2"))
    assert caught.value.status == 409 and vendor.count("POST") == 1
    # cancel: forwarded (PUT by identifier), then the slot is free here
    stored = orjson.loads(result.stored.content)
    cancelled = stored | {"status": "cancelled"}
    await update(ctx, "Appointment", result.stored.res_id, cancelled)
    assert vendor.taken == {} and await slot_status(store, "v-1") == "free"
    assert vendor.appointments["urn:oid:1.2.250.1.213.3.6.99|k1"]["status"] == "cancelled"


async def test_the_owner_s_refusal_is_our_409_and_nothing_is_stored(
    pulled: tuple[Context, Vendor], store: Store
) -> None:
    ctx, vendor = pulled
    vendor.taken["v-2"] = "booked by someone at the vendor's"
    with pytest.raises(FhirError) as caught:
        await create(ctx, "Appointment", booking("v-2", "k3"))
    assert caught.value.status == 409
    assert "refused the booking: HTTP 409: le créneau v-2 est déjà réservé" in str(caught.value)
    assert await slot_status(store, "v-2") == "free" and await appointments(store) == 0


async def test_server_errors_then_confirmed_books_once(
    pulled: tuple[Context, Vendor], store: Store
) -> None:
    ctx, vendor = pulled
    vendor.script = [500, 500]
    await create(ctx, "Appointment", booking("v-2", "k4"))
    assert vendor.count("POST") == 3 and vendor.created == 1
    assert await slot_status(store, "v-2") == "busy" and await appointments(store) == 1


async def test_an_owner_that_hangs_stores_nothing(
    pulled: tuple[Context, Vendor], store: Store
) -> None:
    ctx, vendor = pulled
    vendor.script = ["hang"] * 5
    with pytest.raises(FhirError) as caught:
        await create(ctx, "Appointment", booking("v-2", "k5"))
    assert caught.value.status == 504
    assert await slot_status(store, "v-2") == "free" and await appointments(store) == 0


async def test_an_owner_refusing_connections_stores_nothing(
    pulled: tuple[Context, Vendor], store: Store
) -> None:
    ctx, vendor = pulled
    forwarder = ctx.forwarder
    assert isinstance(forwarder, RemoteBooking)
    (owner,) = forwarder.owners.by_system.values()
    gone = replace(owner, base="http://127.0.0.1:9/fhir")  # discard: nobody listens
    dead = RemoteBooking(
        replace(forwarder.owners, by_system={"urn:sas-fhir-server:agenda:slot": gone})
    )
    with pytest.raises(FhirError) as caught:
        await create(replace(ctx, forwarder=dead), "Appointment", booking("v-2", "k6"))
    assert caught.value.status == 503
    assert await slot_status(store, "v-2") == "free" and await appointments(store) == 0
    assert vendor.count("POST") == 0


async def test_a_remote_booking_needs_an_identifier(
    pulled: tuple[Context, Vendor], store: Store
) -> None:
    ctx, vendor = pulled
    body = booking("v-2", "k7")
    del body["identifier"]
    with pytest.raises(FhirError) as caught:
        await create(ctx, "Appointment", body)
    assert caught.value.status in (400, 422) and vendor.count("POST") == 0
    assert await appointments(store) == 0
