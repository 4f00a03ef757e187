"""The SAS sender against a loopback HTTPS receiver with mutual TLS (SQLite and
PostgreSQL): order, retries, failures, several senders sharing the queue."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from fhir_server.core.fhirtime import PARIS
from fhir_server.delivery.queue import FAILED, SENT, Backoff, Queue
from fhir_server.delivery.sas import SasOutbox
from fhir_server.delivery.sender import SasSender, SasTarget
from fhir_server.interactions import create, update
from fhir_server.interactions.context import Context
from fhir_server.search.registry.parameters import default_registry
from fhir_server.storage.port import Store
from tests.delivery.appointments import SYSTEM, sas_appointment
from tests.delivery.receiver import Pki, Receiver, receiving

FAST = Backoff(first=0.05, cap=0.2)


def sender(store: Store, receiver: Receiver, owner: str = "p1", **options: object) -> SasSender:
    pki = receiver.pki
    target = SasTarget(receiver.url, pki.client_cert, pki.client_key, pki.ca)
    settings: dict[str, object] = {"timeout": 0.5, "tick": 0.05, **options}
    return SasSender(Queue(store, owner, FAST), target, **settings)  # type: ignore[arg-type]


def context(store: Store) -> Context:
    return Context(
        store=store,
        registry=default_registry(),
        timezone=PARIS,
        write_hooks=(SasOutbox(SYSTEM),),
    )


async def book_and_cancel(ctx: Context, value: str) -> str:
    made = await create.create(ctx, "Appointment", sas_appointment(value))
    res_id = made.stored.res_id
    cancelled = {**sas_appointment(value, status="cancelled"), "id": res_id}
    await update.update(ctx, "Appointment", res_id, cancelled)
    return res_id


async def until(check: Callable[[], Awaitable[bool]], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("not reached in time")


async def test_created_then_cancelled_arrive_in_order_over_mtls(
    store: Store, receiver: Receiver
) -> None:
    await book_and_cancel(context(store), "rdv-1")
    s = sender(store, receiver)
    try:
        done = await s.run_once()
    finally:
        await s.aclose()
    assert (done.sent, done.retried, done.failed) == (2, 0, 0)
    first, second = receiver.received
    assert (first.method, first.path, first.identifier) == ("POST", "/Appointment", None)
    assert (second.method, second.identifier) == ("PUT", f"{SYSTEM}|rdv-1")
    assert first.body["status"] == "booked" and second.body["status"] == "cancelled"
    assert first.client_cn == "editeur-test"  # our client certificate
    status = (await s.queue.status())["sas"]
    assert status.counts[SENT] == 2 and status.oldest_unsent is None


@pytest.mark.parametrize("trouble", ["500", "hang", "down"])
async def test_retried_with_backoff_until_the_platform_recovers(
    store: Store, receiver: Receiver, trouble: str
) -> None:
    await book_and_cancel(context(store), "rdv-2")
    if trouble == "down":
        receiver.stop()  # connections refused
    else:
        receiver.mode = trouble
        receiver.hang = 2.0
    s = sender(store, receiver)
    s.start()
    try:
        # several failed attempts, nothing delivered, then the platform comes back

        async def retried() -> bool:
            status = (await s.queue.status())["sas"]
            return status.retrying == 1 and status.counts[SENT] == 0

        await until(retried)
        assert receiver.received == []
        last_error = (await s.queue.status())["sas"].last_error or ""
        assert {"500": "HTTP 500", "hang": "no answer", "down": "Connect"}[trouble] in last_error
        if trouble == "down":
            receiver.start()
        receiver.mode = "ok"
        got = await asyncio.to_thread(receiver.wait_for, 2)

        async def recorded() -> bool:
            return (await s.queue.status())["sas"].counts[SENT] == 2

        await until(recorded)
    finally:
        await s.stop()
    # a POST tried before went as the conditional PUT: created once whatever happened
    assert [r.body["status"] for r in got] == ["booked", "cancelled"]
    assert [r.identifier for r in got] == [f"{SYSTEM}|rdv-2"] * 2
    assert len(receiver.received) == 2
    status = (await s.queue.status())["sas"]
    assert status.counts[SENT] == 2 and status.last_error is None


async def test_a_refusal_fails_is_reported_and_not_retried(
    store: Store, receiver: Receiver
) -> None:
    receiver.mode = "400"
    await create.create(context(store), "Appointment", sas_appointment("rdv-3"))
    s = sender(store, receiver)
    try:
        done = await s.run_once()
        assert (done.sent, done.failed) == (0, 1)
        assert (await s.run_once()).claimed == 0  # never again
    finally:
        await s.aclose()
    assert receiver.attempts == 1
    status = (await s.queue.status())["sas"]
    assert status.counts[FAILED] == 1
    assert status.last_error == "POST HTTP 400: Appointment.identifier: missing"
    (failed,) = await s.queue.failures()
    assert failed.last_status == 400


async def test_a_stranger_certificate_is_refused_by_the_platform_and_retried(
    store: Store, receiver: Receiver
) -> None:
    await create.create(context(store), "Appointment", sas_appointment("rdv-4"))
    pki = receiver.pki
    wrong = SasTarget(receiver.url, pki.stranger_cert, pki.stranger_key, pki.ca)
    s = SasSender(Queue(store, "p1", Backoff(3600, 3600)), wrong, timeout=0.5)
    try:
        done = await s.run_once()
    finally:
        await s.aclose()
    assert (done.sent, done.retried) == (0, 1) and receiver.received == []


async def test_several_senders_share_the_queue_without_duplicates(
    store: Store, receiver: Receiver
) -> None:
    ctx = context(store)
    for i in range(15):
        await book_and_cancel(ctx, f"rdv-m{i}")
    # a generous timeout: a send timed out may have reached the platform, and be sent
    # again (at least once); this test is about claims, not timeouts
    senders = [sender(store, receiver, owner=f"p{i}", batch=4, timeout=10.0) for i in range(3)]
    for s in senders:
        s.start()
    try:

        async def all_sent() -> bool:
            return (await senders[0].queue.status())["sas"].counts[SENT] == 30

        await until(all_sent, seconds=60)
    finally:
        for s in senders:
            await s.stop()
    got = receiver.received
    assert len(got) == 30
    by_key: dict[str, list[str]] = {}
    for r in got:
        key = r.identifier or r.body["identifier"][0]["value"]
        by_key.setdefault(key.split("|")[-1], []).append(r.body["status"])
    assert all(statuses == ["booked", "cancelled"] for statuses in by_key.values())
    assert len(by_key) == 15


def test_the_receiver_refuses_a_client_without_certificate(pki: Pki) -> None:
    """The loopback platform really checks the client certificate (else the mTLS tests
    above would prove nothing)."""
    import ssl

    import httpx

    with receiving(pki) as r:
        context = ssl.create_default_context(cafile=str(pki.ca))
        with pytest.raises((httpx.HTTPError, ssl.SSLError, OSError)):
            httpx.post(f"{r.url}/Appointment", content=b"{}", verify=context, timeout=2)
        assert r.received == []
