"""What the write hooks make of the party (both engines): a vendor's subscription is told
of the bookings on ITS slots, never of another vendor's; the party's status changes go to
the SAS platform like the booker's (the outbox's ``sas`` channel)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from fhir_server.app import make_context
from fhir_server.core.caller import Caller
from fhir_server.core.fhirtime import utcnow
from fhir_server.interactions.context import Context
from fhir_server.interactions.create import create
from fhir_server.interactions.patch import patch
from fhir_server.interactions.update import update
from fhir_server.settings import Settings
from fhir_server.storage.port import Store
from fhir_server.storage.schema import deliveries
from tests.api.conftest import PACKAGES
from tests.booking.conftest import booking
from tests.interactions import party_data

VENDOR_A = Caller(role="vendor", client_id="agenda-a")
VENDOR_B = Caller(role="vendor", client_id="agenda-b")
# a person of the regulation software: its booking names them as operator (SAS content)
REGULATOR = Caller(role="regulator", client_id="regulation", user_id="810009999999")


@pytest.fixture
def ctx(store: Store) -> Context:
    settings = Settings(
        validate_profiles=False,
        package_path=PACKAGES,
        sas_appointments_url="https://127.0.0.1:9/fhir/Appointment",
    )
    return make_context(settings, store)


async def vendor_slot(ctx: Context, who: Caller, res_id: str, hours: int) -> dict[str, Any]:
    vendor = ctx.acting_for(who)
    schedule = f"sched-{who.client_id}"
    sched = party_data.schedule(schedule)
    await update(vendor, "Schedule", schedule, sched)
    start = utcnow().replace(second=0, microsecond=0) + timedelta(hours=hours)
    slot = party_data.free_slot(res_id, schedule, start)
    done = await update(vendor, "Slot", res_id, slot)
    content: dict[str, Any] = orjson.loads(done.stored.content)
    return content


async def book(ctx: Context, slot: dict[str, Any]) -> str:
    done = await create(ctx.acting_for(REGULATOR), "Appointment", booking(slot))
    return done.stored.res_id


async def queued(store: Store, channel: str) -> list[tuple[str, int]]:
    """(resource id, version) of the messages of ``channel``, oldest first."""
    d = deliveries.c
    async with store.reading() as session:
        rows = await session.fetch(
            select(d.res_id, d.version).where(d.channel == channel).order_by(d.id)
        )
    return [(r.res_id, r.version) for r in rows]


async def subscribe(ctx: Context, who: Caller, criteria: str) -> str:
    sub = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "my agenda",
        "criteria": criteria,
        "channel": {"type": "rest-hook", "endpoint": "http://127.0.0.1:9/hook"},
    }
    return (await create(ctx.acting_for(who), "Subscription", sub)).stored.res_id


async def test_a_vendors_subscription_hears_of_bookings_on_its_slots_only(
    ctx: Context, store: Store
) -> None:
    sub_a = await subscribe(ctx, VENDOR_A, "Appointment?status=booked")
    sub_b = await subscribe(ctx, VENDOR_B, "Appointment?status=booked")
    mine = await book(ctx, await vendor_slot(ctx, VENDOR_A, "s-a", 48))
    theirs = await book(ctx, await vendor_slot(ctx, VENDOR_B, "s-b", 50))
    assert await queued(store, f"subscription/{sub_a}") == [(mine, 1)]
    assert await queued(store, f"subscription/{sub_b}") == [(theirs, 1)]
    # the party's noshow is no longer booked: not notified (the criteria decide, as for all)
    ops = [{"op": "replace", "path": "/status", "value": "noshow"}]
    await patch(ctx.acting_for(VENDOR_A), "Appointment", mine, ops)
    assert await queued(store, f"subscription/{sub_a}") == [(mine, 1)]
    # a subscription on every status of its appointments hears the party's own change
    sub_all = await subscribe(ctx, VENDOR_A, "Appointment?status=noshow,fulfilled")
    ops = [{"op": "replace", "path": "/status", "value": "fulfilled"}]
    await patch(ctx.acting_for(VENDOR_A), "Appointment", mine, ops)
    assert await queued(store, f"subscription/{sub_all}") == [(mine, 3)]
    assert await queued(store, f"subscription/{sub_b}") == [(theirs, 1)]


async def test_the_partys_status_changes_go_to_the_sas_platform(ctx: Context, store: Store) -> None:
    res_id = await book(ctx, await vendor_slot(ctx, VENDOR_A, "s-a", 48))
    assert await queued(store, "sas") == [(res_id, 1)]  # the booking names its operator
    ops = [{"op": "replace", "path": "/status", "value": "noshow"}]
    await patch(ctx.acting_for(VENDOR_A), "Appointment", res_id, ops)
    ops = [{"op": "replace", "path": "/status", "value": "cancelled"}]
    await patch(ctx.acting_for(VENDOR_A), "Appointment", res_id, ops)
    assert await queued(store, "sas") == [(res_id, 1), (res_id, 2), (res_id, 3)]
    d = deliveries.c
    async with store.reading() as session:
        rows = await session.fetch(
            select(d.body, d.headers).where(d.channel == "sas").order_by(d.id)
        )
    assert [orjson.loads(r.body)["status"] for r in rows] == ["booked", "noshow", "cancelled"]
    assert [orjson.loads(r.headers)["method"] for r in rows] == ["POST", "PUT", "PUT"]


async def test_the_partys_rebooking_adds_no_operator_of_its_own(ctx: Context, store: Store) -> None:
    """The FrAppointmentOperator is the regulator who booked; a vendor's person re-booking
    a cancelled appointment (the patient came back) is not one."""
    person = Caller(role="vendor", client_id="agenda-a", user_id="810001111111")
    res_id = await book(ctx, await vendor_slot(ctx, VENDOR_A, "s-a", 48))
    for status in ("cancelled", "booked"):
        ops = [{"op": "replace", "path": "/status", "value": status}]
        done = await patch(ctx.acting_for(person), "Appointment", res_id, ops)
    content = orjson.loads(done.stored.content)
    assert content["status"] == "booked"
    operators = [e for e in content["extension"] if e["url"].endswith("FrAppointmentOperator")]
    assert len(operators) == 1
    assert "810001111111" not in orjson.dumps(content).decode()
    assert "810009999999" in orjson.dumps(operators).decode()
