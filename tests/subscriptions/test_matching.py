"""Subscriptions through the interactions on both engines: the criteria refused at
creation (nothing stored), the server's status, matching with the subscriber's visibility
(chains included), and the rest-hook sender's error state."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from sqlalchemy import select

from auth.policy import TYPE_CRENEAU
from fhir_server.app import make_context, make_subscription_sender, matcher_of
from fhir_server.core import errors
from fhir_server.core.caller import Caller
from fhir_server.delivery.queue import Backoff, Queue
from fhir_server.interactions.context import Context
from fhir_server.interactions.create import create
from fhir_server.interactions.update import update
from fhir_server.settings import Settings
from fhir_server.storage.port import Store
from fhir_server.storage.schema import deliveries, resources
from fhir_server.subscriptions.model import ROLE_TAG
from tests.api.conftest import PACKAGES

VENDOR_A = Caller(role="vendor", client_id="vendor-a")
VENDOR_B = Caller(role="vendor", client_id="vendor-b")
REGULATOR = Caller(role="regulator", client_id="regulation")


@pytest.fixture
def ctx(store: Store) -> Context:
    settings = Settings(
        validate_profiles=False,
        package_path=PACKAGES,
        subscription_failures=2,
        delivery_backoff_first=0,
        delivery_backoff_max=0,
        subscription_timeout=1,
    )
    return make_context(settings, store)


def subscription(criteria: str, **channel: Any) -> dict[str, Any]:
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "test",
        "criteria": criteria,
        "channel": {"type": "rest-hook", "endpoint": "http://127.0.0.1:9/hook", **channel},
    }


async def subscribe(ctx: Context, who: Caller, criteria: str, **channel: Any) -> str:
    done = await create(ctx.acting_for(who), "Subscription", subscription(criteria, **channel))
    return done.stored.res_id


async def stored_subscriptions(store: Store) -> int:
    async with store.writing() as session:
        rows = await session.fetch(
            select(resources.c.pk).where(resources.c.res_type == "Subscription")
        )
    return len(rows)


async def notified(store: Store, sub_id: str) -> list[str]:
    """The resource ids queued for ``sub_id``, oldest first."""
    async with store.writing() as session:
        rows = await session.fetch(
            select(deliveries.c.res_id)
            .where(deliveries.c.channel == f"subscription/{sub_id}")
            .order_by(deliveries.c.id)
        )
    return [r.res_id for r in rows]


def appointment(status: str = "booked") -> dict[str, Any]:
    return {
        "resourceType": "Appointment",
        "status": status,
        "participant": [{"status": "accepted"}],
    }


@pytest.mark.parametrize(
    ("criteria", "channel", "words"),
    [
        ("Appointment", {}, "Type?parameters"),
        ("Unknown?status=booked", {}, "cannot be subscribed"),
        ("AuditEvent?_id=x", {}, "cannot be subscribed"),
        ("Appointment?nonsense=1", {}, "nonsense"),
        ("Appointment?status:above=booked", {}, "above"),
        ("Slot?schedule.nonsense=1", {}, "nonsense"),
        ("Appointment?_sort=date", {}, "_sort"),
        ("Appointment?status=booked", {"endpoint": "ftp://127.0.0.1/x"}, "http(s)"),
        ("Appointment?status=booked", {"endpoint": "not a url"}, "http(s)"),
        ("Appointment?status=booked", {"type": "email"}, "channel.type"),
        ("Appointment?status=booked", {"payload": "application/xml"}, "payload"),
        ("Appointment?status=booked", {"header": ["no colon"]}, "header"),
    ],
)
async def test_a_criteria_or_channel_the_server_cannot_serve_is_a_400_and_nothing_stored(
    ctx: Context, store: Store, criteria: str, channel: dict[str, Any], words: str
) -> None:
    with pytest.raises(errors.Incorrect) as caught:
        await subscribe(ctx, REGULATOR, criteria, **channel)
    assert words in str(caught.value)
    assert await stored_subscriptions(store) == 0


async def test_a_vendor_may_not_subscribe_to_a_type_it_may_not_read(ctx: Context) -> None:
    with pytest.raises(errors.Incorrect, match="may not search"):
        await subscribe(ctx, VENDOR_A, "Endpoint?status=active")


@pytest.mark.parametrize(
    "criteria",
    [
        "Slot?schedule.actor=Practitioner/p1",
        "Slot?schedule=Schedule/s1&status=free",
        "Appointment?status=booked",
        "Appointment?actor=Practitioner/p1",
    ],
)
async def test_the_server_activates_a_requested_subscription_and_records_the_role(
    ctx: Context, criteria: str
) -> None:
    done = await create(ctx.acting_for(REGULATOR), "Subscription", subscription(criteria))
    stored = orjson.loads(done.stored.content)
    assert stored["status"] == "active"
    assert {"system": ROLE_TAG, "code": "regulator"} in stored["meta"]["tag"]
    assert done.stored.owner == "regulation"


async def test_a_vendor_is_never_notified_of_another_vendors_appointment(
    ctx: Context, store: Store
) -> None:
    sub_a = await subscribe(ctx, VENDOR_A, "Appointment?status=booked")
    other = await create(ctx.acting_for(VENDOR_B), "Appointment", appointment())
    own = await create(ctx.acting_for(VENDOR_A), "Appointment", appointment())
    await create(ctx.acting_for(VENDOR_A), "Appointment", appointment("proposed"))
    assert await notified(store, sub_a) == [own.stored.res_id]
    assert other.stored.res_id not in await notified(store, sub_a)
    # the regulator sees every appointment: both booked ones
    sub_r = await subscribe(ctx, REGULATOR, "Appointment?status=booked")
    again = await update(
        ctx.acting_for(VENDOR_B),
        "Appointment",
        other.stored.res_id,
        {**appointment(), "id": other.stored.res_id, "comment": "moved"},
    )
    assert await notified(store, sub_r) == [again.stored.res_id]
    assert await notified(store, sub_a) == [own.stored.res_id]


async def test_a_chained_criteria_matches_on_the_rows_just_written(
    ctx: Context, store: Store
) -> None:
    admin = ctx.acting_for(Caller(role="admin", client_id="ops"))
    for pid in ("p1", "p2"):
        await update(admin, "Practitioner", pid, {"resourceType": "Practitioner", "id": pid})
        await update(
            admin,
            "Schedule",
            f"s-{pid}",
            {
                "resourceType": "Schedule",
                "id": f"s-{pid}",
                "actor": [{"reference": f"Practitioner/{pid}"}],
            },
        )
    sub = await subscribe(ctx, REGULATOR, "Slot?schedule.actor=Practitioner/p1")
    free = await subscribe(ctx, REGULATOR, "Slot?schedule=Schedule/s-p1&status=free")
    ids = []
    for pid, status in (("p1", "free"), ("p2", "free"), ("p1", "busy")):
        slot = {
            "resourceType": "Slot",
            "meta": {"security": [{"system": TYPE_CRENEAU, "code": "PUBLIC"}]},
            "schedule": {"reference": f"Schedule/s-{pid}"},
            "status": status,
            "start": "2026-06-12T16:20:00+02:00",
            "end": "2026-06-12T16:40:00+02:00",
        }
        ids.append((await create(admin, "Slot", slot)).stored.res_id)
    assert await notified(store, sub) == [ids[0], ids[2]]
    assert await notified(store, free) == [ids[0]]


async def test_failing_endpoint_sets_the_subscription_in_error_and_a_client_resumes_it(
    ctx: Context, store: Store
) -> None:
    sub = await subscribe(ctx, REGULATOR, "Appointment?status=booked")  # port 9: refused
    # stored as sent by an admin (a regulator's Appointment must book a slot); the
    # regulator reads every Appointment, so its subscription matches
    await create(ctx, "Appointment", appointment())
    regulator = ctx.acting_for(REGULATOR)
    sender = make_subscription_sender(
        Settings(subscription_failures=2, subscription_timeout=1), ctx
    )
    sender.queue = Queue(store, "test", Backoff(0, 0))
    try:
        await sender.run_once()
    finally:
        await sender.stop()
    current = orjson.loads((await store.read("Subscription", sub, REGULATOR)).content)  # type: ignore[union-attr]
    assert current["status"] == "error"
    assert "failed notifications" in current["error"]
    assert "Appointment" not in current["error"]
    # in error: later writes are not queued for it
    matcher_of(ctx).active.invalidate()
    await create(ctx, "Appointment", appointment())
    assert len(await notified(store, sub)) == 1
    # the client sets it back: active again, notified again
    resumed = {**current, "status": "requested"}
    await update(regulator, "Subscription", sub, resumed)
    current = orjson.loads((await store.read("Subscription", sub, REGULATOR)).content)  # type: ignore[union-attr]
    assert current["status"] == "active" and "error" not in current
    await create(ctx, "Appointment", appointment())
    assert len(await notified(store, sub)) == 2


async def test_another_callers_subscription_is_not_visible(ctx: Context, store: Store) -> None:
    sub = await subscribe(
        ctx, VENDOR_A, "Appointment?status=booked", header=["Authorization: Bearer s3cret"]
    )
    assert await store.read("Subscription", sub, VENDOR_B) is None
    assert await store.read("Subscription", sub, REGULATOR) is None
    assert await store.read("Subscription", sub, VENDOR_A) is not None


async def test_a_reference_criteria_matches_through_the_cheap_test_and_the_search(
    ctx: Context, store: Store
) -> None:
    admin = ctx.acting_for(Caller(role="admin", client_id="ops"))
    for pid in ("p1", "p2"):
        await update(admin, "Practitioner", pid, {"resourceType": "Practitioner", "id": pid})
    sub = await subscribe(ctx, REGULATOR, "Appointment?actor=Practitioner/p1,Practitioner/p9")
    ids = []
    for pid in ("p2", "p1"):
        body = {
            **appointment(),
            "participant": [{"actor": {"reference": f"Practitioner/{pid}"}, "status": "accepted"}],
        }
        ids.append((await create(admin, "Appointment", body)).stored.res_id)
    assert await notified(store, sub) == [ids[1]]
