"""The rest-hook sender's per-subscription error state on both engines: consecutive failures
counted across messages (a success clears the count), ``status=error`` with the reason,
the messages held (not lost) until the client resumes the Subscription, then sent."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from sqlalchemy import select

from fhir_server.app import make_context, make_subscription_sender
from fhir_server.core.caller import Caller
from fhir_server.delivery.queue import PENDING, SENT, Backoff, Message, Queue, enqueue
from fhir_server.interactions.context import Context
from fhir_server.interactions.create import create
from fhir_server.interactions.update import update
from fhir_server.settings import Settings
from fhir_server.storage.port import Store
from fhir_server.storage.schema import deliveries
from fhir_server.subscriptions import failures
from fhir_server.subscriptions.model import channel_of
from fhir_server.subscriptions.sender import RestHookSender
from tests.api.conftest import PACKAGES
from tests.subscriptions.receiver import receiving

REGULATOR = Caller(role="regulator", client_id="regulation")
D = deliveries.c


@pytest.fixture
def ctx(store: Store) -> Context:
    return make_context(Settings(validate_profiles=False, package_path=PACKAGES), store)


async def subscribe(ctx: Context, endpoint: str) -> str:
    body = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "test",
        "criteria": "Appointment?status=booked",
        "channel": {"type": "rest-hook", "endpoint": endpoint},
    }
    return (await create(ctx.acting_for(REGULATOR), "Subscription", body)).stored.res_id


async def queue_two(store: Store, sub: str) -> None:
    """Two notifications of ``sub`` under two ordering keys: both may be in flight."""
    async with store.writing() as session:
        for key in ("a", "b"):
            await enqueue(session, Message(channel_of(sub), key, None, "Appointment", key, 1))


def sender(ctx: Context, failures_: int, concurrency: int) -> RestHookSender:
    s = make_subscription_sender(
        Settings(subscription_failures=failures_, subscription_concurrency=concurrency), ctx
    )
    s.queue = Queue(ctx.store, "test", Backoff(0, 0))  # retries due at once
    return s


async def states(store: Store, sub: str) -> list[tuple[str, str, int]]:
    async with store.reading() as session:
        rows = await session.fetch(
            select(D.key, D.state, D.attempts).where(D.channel == channel_of(sub)).order_by(D.key)
        )
    return [tuple(r) for r in rows]  # type: ignore[misc]


async def resource(store: Store, sub: str) -> dict[str, Any]:
    stored = await store.read("Subscription", sub, REGULATOR)
    assert stored is not None
    return dict(orjson.loads(stored.content))


async def run(ctx: Context, failures_: int, concurrency: int, rounds: int = 1000) -> None:
    s = sender(ctx, failures_, concurrency)
    try:
        await s.run_once(rounds)
    finally:
        await s.stop()


async def test_failures_are_counted_across_messages_and_held_until_resumed(
    ctx: Context, store: Store
) -> None:
    with receiving(script=(500, 500, 500, 500)) as hook:
        sub = await subscribe(ctx, f"{hook.url}/hook")
        await queue_two(store, sub)
        # round 1: a and b fail (2 failures); round 2: the third failure sets the error,
        # though no message failed 3 times (counted per message, nothing would happen)
        await run(ctx, failures_=3, concurrency=2, rounds=2)
        assert hook.codes() == [500] * 4
        current = await resource(store, sub)
        assert current["status"] == "error"
        assert "failed notifications in a row" in current["error"]
        assert "HTTP 500" in current["error"]
        # held, not lost: pending, each tried twice
        assert await states(store, sub) == [("a", PENDING, 2), ("b", PENDING, 2)]
        # in error: a run sends nothing (held again)
        await run(ctx, failures_=3, concurrency=2)
        assert len(hook.codes()) == 4
        assert await states(store, sub) == [("a", PENDING, 2), ("b", PENDING, 2)]
        # the client resumes it: the held messages are due at once, and sent
        await update(
            ctx.acting_for(REGULATOR), "Subscription", sub, {**current, "status": "requested"}
        )
        current = await resource(store, sub)
        assert current["status"] == "active" and "error" not in current
        assert await failures.count(store, sub) == 0  # the count starts again
        await run(ctx, failures_=3, concurrency=2)
        assert hook.codes() == [500] * 4 + [200] * 2
        assert [s for _, s, _ in await states(store, sub)] == [SENT, SENT]


async def test_a_success_clears_the_count(ctx: Context, store: Store) -> None:
    with receiving(script=(500, 200, 500, 200)) as hook:
        sub = await subscribe(ctx, f"{hook.url}/hook")
        await queue_two(store, sub)
        # one at a time: a fails, a is sent (cleared), b fails (1, not 2), b is sent
        await run(ctx, failures_=2, concurrency=1)
        assert hook.codes() == [500, 200, 500, 200]
    assert (await resource(store, sub))["status"] == "active"
    assert [s for _, s, _ in await states(store, sub)] == [SENT, SENT]
    assert await failures.count(store, sub) == 0


async def test_a_count_is_per_subscription(ctx: Context, store: Store) -> None:
    with receiving(script=(500, 500)) as hook:
        first = await subscribe(ctx, f"{hook.url}/one")
        second = await subscribe(ctx, f"{hook.url}/two")
        async with store.writing() as session:
            for sub in (first, second):
                await enqueue(session, Message(channel_of(sub), "a", None, "Appointment", "a", 1))
        await run(ctx, failures_=2, concurrency=2, rounds=1)
        assert hook.codes() == [500, 500]
    assert await failures.count(store, first) == 1
    assert await failures.count(store, second) == 1
    assert (await resource(store, first))["status"] == "active"


async def test_messages_of_an_ended_subscription_are_dropped(ctx: Context, store: Store) -> None:
    with receiving() as hook:
        sub = await subscribe(ctx, f"{hook.url}/hook")
        await queue_two(store, sub)
        current = await resource(store, sub)
        await update(ctx.acting_for(REGULATOR), "Subscription", sub, {**current, "status": "off"})
        await run(ctx, failures_=2, concurrency=2)
        assert hook.codes() == []
    assert [s for _, s, _ in await states(store, sub)] == ["failed", "failed"]
