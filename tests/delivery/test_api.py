"""``GET [base]/$delivery-status`` on the real app (in process), SQLite and PostgreSQL:
admins only, the counts and failures of the outbox, never a body."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from fhir_server.app import create_app
from fhir_server.delivery.queue import Backoff, Message, Queue, enqueue
from fhir_server.settings import Settings
from fhir_server.storage.port import Store

HEADERS = {"accept": "application/fhir+json"}


async def client(store: Store, role: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(auth="none", default_role=role, audit=False, validate_profiles=False)
    app = create_app(settings, store)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c


def values(parameter: dict[str, Any]) -> dict[str, Any]:
    return {
        p["name"]: next(v for k, v in p.items() if k.startswith("value")) for p in parameter["part"]
    }


async def test_admins_see_counts_retries_and_failures(store: Store) -> None:
    async with store.writing() as session:
        for i in range(3):
            await enqueue(
                session,
                Message(channel="sas", key=f"Appointment/a{i}", version=1, body=b"secret body"),
            )
    queue = Queue(store, "p1", Backoff(3600, 3600))
    first, second, _ = await queue.claim(3)
    await queue.failed(first, "POST HTTP 422: slot taken", 422)
    await queue.retry(second, "ConnectError: refused")
    async for c in client(store, "admin"):
        r = await c.get("/$delivery-status", headers=HEADERS)
    assert r.status_code == 200 and r.json()["resourceType"] == "Parameters"
    assert b"secret body" not in r.content
    channel, failed = r.json()["parameter"]
    sas = values(channel)
    assert (sas["channel"], sas["pending"], sas["sending"], sas["failed"]) == ("sas", 1, 1, 1)
    assert sas["retrying"] == 1 and sas["oldestUnsentSeconds"] >= 0
    assert sas["lastError"] == "ConnectError: refused"
    assert failed["name"] == "failed"
    shown = values(failed)
    assert (shown["key"], shown["status"], shown["error"]) == (
        "Appointment/a0",
        422,
        "POST HTTP 422: slot taken",
    )


async def test_an_empty_outbox_is_an_empty_parameters(store: Store) -> None:
    async for c in client(store, "admin"):
        r = await c.get("/$delivery-status", headers=HEADERS)
    assert r.status_code == 200 and r.json() == {"resourceType": "Parameters"}


@pytest.mark.parametrize("role", ["vendor", "regulator", "platform"])
async def test_other_roles_are_refused(store: Store, role: str) -> None:
    async for c in client(store, role):
        r = await c.get("/$delivery-status", headers=HEADERS)
    assert r.status_code == 403
    assert r.json()["resourceType"] == "OperationOutcome"
    assert "$delivery-status" in r.text


async def test_a_bad_accept_is_refused(store: Store) -> None:
    async for c in client(store, "admin"):
        r = await c.get("/$delivery-status", headers={"accept": "text/csv"})
    assert r.status_code in (406, 415)
