"""The sender loop (``delivery/loop.py``) on SQLite and PostgreSQL: a retry leaves when its
``next_attempt`` comes, not at the next tick; the loop sleeps until the earliest due
message (bounded below and above); the queue's ``next_due`` sees only what may be sent."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import update

from fhir_server.core.fhirtime import PARIS, utcnow
from fhir_server.delivery.loop import MIN_WAIT
from fhir_server.delivery.queue import SENT, Backoff, Message, Queue, enqueue
from fhir_server.delivery.sas import SasOutbox
from fhir_server.delivery.sender import SasSender, SasTarget
from fhir_server.interactions import create
from fhir_server.interactions.context import Context
from fhir_server.search.registry.parameters import default_registry
from fhir_server.storage import schema
from fhir_server.storage.port import Store
from tests.delivery.appointments import SYSTEM, sas_appointment
from tests.delivery.receiver import Receiver
from tests.delivery.test_sender import until

LONG_TICK = 600.0  # the tick never fires within a test: what happens comes from elsewhere


def sas_sender(store: Store, receiver: Receiver, backoff: Backoff) -> SasSender:
    pki = receiver.pki
    target = SasTarget(receiver.url, pki.client_cert, pki.client_key, pki.ca)
    return SasSender(Queue(store, "p1", backoff), target, timeout=2.0, tick=LONG_TICK)


def waking(s: SasSender) -> Context:
    """A context whose SAS appointments wake ``s`` once written."""
    return Context(
        store=s.queue.store,
        registry=default_registry(),
        timezone=PARIS,
        write_hooks=(SasOutbox(SYSTEM, s.wake),),
    )


async def test_a_failed_send_is_retried_at_its_next_attempt_not_at_the_tick(
    store: Store, receiver: Receiver
) -> None:
    receiver.mode = "500-once"
    s = sas_sender(store, receiver, Backoff(first=0.5, cap=0.5))
    ctx = waking(s)
    s.start()
    try:
        await create.create(ctx, "Appointment", sas_appointment("rdv-retry"))

        async def sent() -> bool:
            return (await s.queue.status())["sas"].counts[SENT] == 1

        # the write wakes the sender (attempt 1: 500), the retry comes 0.25-0.5 s later:
        # with a 600 s tick, only the timer of the retry's next_attempt can send it
        await until(sent, seconds=20)
    finally:
        await s.stop()
    assert receiver.attempts == 2
    (got,) = receiver.received
    assert (got.method, got.identifier) == ("PUT", f"{SYSTEM}|rdv-retry")


async def put(store: Store, *messages: Message) -> None:
    async with store.writing() as session:
        for m in messages:
            await enqueue(session, m)


async def test_next_due_is_the_earliest_message_that_may_be_sent(store: Store) -> None:
    q = Queue(store, "p1")
    assert await q.next_due("sas") is None
    later = utcnow() + timedelta(seconds=30)
    await put(
        store,
        Message("sas", "k1", b"1", not_before=later),
        Message("sas", "k1", b"2"),  # due now, but held behind the first of its key
        Message("other", "k2", b"3"),  # another channel
    )
    due = await q.next_due("sas")
    assert due is not None and abs((due - later).total_seconds()) < 0.01
    await put(store, Message("sas", "k3", b"4", not_before=later - timedelta(seconds=10)))
    due = await q.next_due("sas")
    assert due is not None and abs((due - later).total_seconds() - (-10)) < 0.01
    # a claimed message's lease counts too (its process may die)
    async with store.writing() as session:
        await session.execute(update(schema.deliveries).values(next_attempt=utcnow()))
    (first, *_) = await q.claim(10, "sas", lease=5.0)
    due = await q.next_due("sas")
    assert due is not None and first.lease_until is not None and due <= first.lease_until


async def test_the_loop_waits_for_the_earliest_due_message_within_bounds(
    store: Store, receiver: Receiver
) -> None:
    s = sas_sender(store, receiver, Backoff())
    # nothing queued: the tick (jittered +-20 %)
    assert 0.8 * LONG_TICK <= await s.wait_time() <= 1.2 * LONG_TICK
    await put(store, Message("sas", "k", b"{}", not_before=utcnow() + timedelta(seconds=42)))
    assert 40 < await s.wait_time() <= 42
    # due already (another process holds it, say): never a busy loop
    await put(store, Message("sas", "k2", b"{}", not_before=utcnow() - timedelta(seconds=5)))
    assert await s.wait_time() == MIN_WAIT


async def test_a_wake_starts_a_round_at_once_and_stop_ends_the_loop(
    store: Store, receiver: Receiver
) -> None:
    s = sas_sender(store, receiver, Backoff())
    ctx = waking(s)
    s.start()
    try:
        await asyncio.sleep(0.2)  # the loop sleeps on its 600 s tick
        await create.create(ctx, "Appointment", sas_appointment("rdv-wake"))
        await asyncio.to_thread(receiver.wait_for, 1, 20.0)
    finally:
        await s.stop()
    assert s._task is None and s._client is None


async def test_the_housekeeping_runs_in_the_background_and_a_failure_stops_nothing(
    store: Store, receiver: Receiver
) -> None:
    runs: list[int] = []

    async def chores() -> None:
        runs.append(len(runs))
        if len(runs) == 1:
            raise RuntimeError("the database went away")

    s = sas_sender(store, receiver, Backoff())
    s.tick = 0.05  # a round every 50 ms: the housekeeping keeps its own pace
    s.housekeeping, s.housekeeping_every = chores, 0.1
    s.start()
    try:

        async def twice() -> bool:
            return len(runs) >= 2

        await until(twice)
    finally:
        await s.stop()
    assert s._chores is None
