"""SMART scopes in subscriptions, on both engines: the creating token's scopes are recorded
by the server (a client's own tags are dropped), a criteria on a type they do not let it
read is refused at creation, and matching reads with them: a subscriber is never told of
what its token's scopes hide."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
import pytest

from fhir_server.core import errors
from fhir_server.core.caller import SYSTEM, Caller
from fhir_server.interactions.context import Context
from fhir_server.interactions.create import create
from fhir_server.interactions.update import update
from fhir_server.storage.port import Store
from fhir_server.subscriptions.model import ROLE_TAG, SCOPE_TAG
from tests.subscriptions.test_matching import (
    appointment,
    ctx,  # noqa: F401 - the fixture
    notified,
    stored_subscriptions,
    subscription,
)

SLOTS_ONLY = frozenset(
    {"system/Slot.read", "system/Subscription.write", "system/Subscription.read"}
)
APPOINTMENTS = frozenset({"system/Appointment.read", "system/Subscription.*", "openid"})


def platform(scopes: frozenset[str]) -> Caller:
    return Caller(role="platform", client_id="regulation-software", scopes=scopes)


def tags(resource: dict[str, Any], system: str) -> list[str]:
    return [t["code"] for t in resource["meta"]["tag"] if t.get("system") == system]


async def test_a_criteria_on_a_type_the_scopes_hide_is_refused_and_nothing_stored(
    ctx: Context,  # noqa: F811
    store: Store,
) -> None:
    for criteria in ("Appointment?status=booked", "Practitioner?active=true"):
        with pytest.raises(errors.Incorrect, match="SMART scope") as caught:
            await create(
                ctx.acting_for(platform(SLOTS_ONLY)), "Subscription", subscription(criteria)
            )
        assert criteria.split("?")[0] in str(caught.value)
    assert await stored_subscriptions(store) == 0
    # the type its scopes grant is accepted
    done = await create(
        ctx.acting_for(platform(SLOTS_ONLY)), "Subscription", subscription("Slot?status=free")
    )
    stored = orjson.loads(done.stored.content)
    assert sorted(tags(stored, SCOPE_TAG)) == sorted(SLOTS_ONLY)


async def test_the_server_records_the_tokens_smart_scopes_and_drops_forged_tags(
    ctx: Context,  # noqa: F811
) -> None:
    body = subscription("Appointment?status=booked")
    body["meta"] = {
        "tag": [
            {"system": ROLE_TAG, "code": "admin"},
            {"system": SCOPE_TAG, "code": "system/*.read"},
            {"system": "urn:other", "code": "kept"},
        ]
    }
    done = await create(ctx.acting_for(platform(APPOINTMENTS)), "Subscription", body)
    stored = orjson.loads(done.stored.content)
    assert tags(stored, ROLE_TAG) == ["platform"]
    # only SMART resource scopes are recorded ("openid" says nothing of types)
    assert tags(stored, SCOPE_TAG) == ["system/Appointment.read", "system/Subscription.*"]
    assert tags(stored, "urn:other") == ["kept"]
    # a token without scopes: none recorded, its role alone decides (and a forged one dropped)
    plain = await create(
        ctx.acting_for(Caller(role="regulator", client_id="r")), "Subscription", body
    )
    assert tags(orjson.loads(plain.stored.content), SCOPE_TAG) == []
    # the owner updating with a narrower token: the new scopes are recorded...
    sub_id = done.stored.res_id
    narrower = platform(frozenset({"system/Appointment.read", "system/Subscription.write"}))
    again = await update(ctx.acting_for(narrower), "Subscription", sub_id, {**body, "id": sub_id})
    assert tags(orjson.loads(again.stored.content), SCOPE_TAG) == [
        "system/Appointment.read",
        "system/Subscription.write",
    ]
    # ...and the server's own correction (status=error) keeps the subscriber's
    current = orjson.loads(again.stored.content)
    fixed = await update(
        ctx.acting_for(SYSTEM), "Subscription", sub_id, {**current, "status": "off"}
    )
    assert tags(orjson.loads(fixed.stored.content), SCOPE_TAG) == tags(current, SCOPE_TAG)
    assert tags(orjson.loads(fixed.stored.content), ROLE_TAG) == ["platform"]


async def test_matching_reads_with_the_recorded_scopes(
    ctx: Context,  # noqa: F811
    store: Store,
) -> None:
    told = await create(
        ctx.acting_for(platform(APPOINTMENTS)),
        "Subscription",
        subscription("Appointment?status=booked"),
    )
    # a Subscription stored with Slot-only scopes and an Appointment criteria (as a server
    # that did not check scopes at creation stored it): the rules are bypassed to store it
    hidden = subscription("Appointment?status=booked")
    hidden["meta"] = {
        "tag": [
            {"system": ROLE_TAG, "code": "platform"},
            *({"system": SCOPE_TAG, "code": s} for s in sorted(SLOTS_ONLY)),
        ]
    }
    hidden["status"] = "active"
    raw = replace(ctx.acting_for(platform(APPOINTMENTS)), subscription_rules=None)
    not_told = await create(raw, "Subscription", hidden)
    # the same without scopes: the platform role reads every Appointment
    role_only = subscription("Appointment?status=booked")
    role_only["meta"] = {"tag": [{"system": ROLE_TAG, "code": "platform"}]}
    role_only["status"] = "active"
    everything = await create(raw, "Subscription", role_only)
    booked = await create(ctx, "Appointment", appointment())
    assert await notified(store, told.stored.res_id) == [booked.stored.res_id]
    assert await notified(store, everything.stored.res_id) == [booked.stored.res_id]
    assert await notified(store, not_told.stored.res_id) == []


async def test_a_chain_through_a_type_the_scopes_hide_is_refused(
    ctx: Context,  # noqa: F811
    store: Store,
) -> None:
    chained = "Slot?schedule.actor=Practitioner/p1"
    with pytest.raises(errors.Incorrect, match=r"schedule\.actor reads Schedule") as caught:
        await create(ctx.acting_for(platform(SLOTS_ONLY)), "Subscription", subscription(chained))
    assert "system/Schedule.read" in str(caught.value)
    assert await stored_subscriptions(store) == 0
    # a plain reference to a Schedule reads no Schedule: accepted
    plain = subscription("Slot?schedule=Schedule/s1&status=free")
    await create(ctx.acting_for(platform(SLOTS_ONLY)), "Subscription", plain)
    # the scope of the type it goes through: accepted; no scope at all: its role decides
    wider = platform(SLOTS_ONLY | {"system/Schedule.read"})
    await create(ctx.acting_for(wider), "Subscription", subscription(chained))
    await create(ctx.acting_for(platform(frozenset())), "Subscription", subscription(chained))
    assert await stored_subscriptions(store) == 3
