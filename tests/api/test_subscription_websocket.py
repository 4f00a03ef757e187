"""The websocket channel's bad inputs through a real ``serve`` process with real Bearer
tokens (dev IdP): each refused frame gets a clear ``error`` frame and the connection stays
usable; an upgrade without a token is refused; a token whose SMART scopes do not reach
Appointments may not watch them (400 at creation)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from auth.dev_idp import ClientConfig, DevIdpConfig
from fhir_server.subscriptions.hub import MAX_BINDS
from tests.auth.dev_idp.conftest import Idp, serving
from tests.servers import Served, started, with_packages

pytestmark = pytest.mark.e2e
FHIR = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
WIDE = ("system/*.read", "system/Subscription.write", "system/Appointment.write")
SLOTS = (
    "system/Slot.read",
    "system/Slot.write",
    "system/Subscription.read",
    "system/Subscription.write",
)
NO_READ = ("system/Slot.read", "system/Subscription.write")
CLIENTS = {"ws-a": WIDE, "ws-b": WIDE, "ws-slots": SLOTS, "ws-noread": NO_READ}


@pytest.fixture(scope="module")
def idp() -> Iterator[Idp]:
    clients = tuple(
        ClientConfig(
            client_id=name,
            client_secret=f"secret-{name}",
            grant_types=("client_credentials",),
            scopes=scopes,
        )
        for name, scopes in CLIENTS.items()
    )
    with serving(DevIdpConfig(clients=clients)) as running:
        yield running


@pytest.fixture
def server(idp: Idp, tmp_path: Path) -> Iterator[Served]:
    env = with_packages(
        {
            **os.environ,
            "FHIR_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'ws.db'}",
            "FHIR_AUTH": "on",
            "FHIR_PSC_ISSUER": idp.issuer,
            "FHIR_SYSTEM_CLIENTS": orjson.dumps({name: "platform" for name in CLIENTS}).decode(),
            "FHIR_AUDIT": "false",
            "FHIR_VALIDATE_PROFILES": "false",
        }
    )
    with started(env, tmp_path / "serve.log") as served:
        yield served


def token(idp: Idp, client: str) -> dict[str, str]:
    answer = idp.http.post(
        idp.endpoint("token"),
        data={"grant_type": "client_credentials", "scope": " ".join(CLIENTS[client])},
        auth=(client, f"secret-{client}"),
    )
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def subscription(criteria: str, channel: str = "websocket") -> dict[str, Any]:
    body: dict[str, Any] = {"type": channel}
    if channel == "rest-hook":
        body["endpoint"] = "http://127.0.0.1:9/hook"
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "ws",
        "criteria": criteria,
        "channel": body,
    }


def subscribe(base: str, auth: dict[str, str], criteria: str, channel: str = "websocket") -> str:
    r = httpx.post(
        f"{base}/Subscription",
        json=subscription(criteria, channel),
        headers={**FHIR, **auth},
        timeout=10,
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def ws_url(base: str) -> str:
    return base.replace("http://", "ws://") + "/$subscription-websocket"


async def ask(ws: ClientConnection, frame: str | bytes) -> str:
    await ws.send(frame)
    return str(await asyncio.wait_for(ws.recv(), 5))


def test_each_bad_frame_gets_an_error_and_the_connection_stays_usable(
    idp: Idp, server: Served
) -> None:
    a, b = token(idp, "ws-a"), token(idp, "ws-b")
    mine = subscribe(server.base, a, "Appointment?status=booked")
    hook = subscribe(server.base, a, "Appointment?status=booked", "rest-hook")
    theirs = subscribe(server.base, b, "Appointment?status=booked")
    deleted = subscribe(server.base, a, "Appointment?status=proposed")
    gone = httpx.delete(f"{server.base}/Subscription/{deleted}", headers=a, timeout=10)
    assert gone.status_code in (200, 204), gone.text
    no_read = token(idp, "ws-noread")  # may write its Subscriptions, not read them
    written = subscribe(server.base, no_read, "Slot?status=free")

    async def scenario() -> dict[str, str]:
        async with connect(ws_url(server.base), additional_headers=a, open_timeout=10) as ws:
            async with connect(
                ws_url(server.base), additional_headers=no_read, open_timeout=10
            ) as other:
                refused = await ask(other, f"bind {written}")
            answers = {
                "no read": refused,
                "unknown": await ask(ws, "bind unknown-sub"),
                "theirs": await ask(ws, f"bind {theirs}"),
                "deleted": await ask(ws, f"bind {deleted}"),
                "hook": await ask(ws, f"bind {hook}"),
                "alone": await ask(ws, "bind"),
                "bad id": await ask(ws, "bind ../x"),
                "garbage": await ask(ws, "hello there"),
                "binary": await ask(ws, b"\x00\x01bind"),
                "long": await ask(ws, "bind " + "x" * 300),
                "mine": await ask(ws, f"bind {mine}"),
                "again": await ask(ws, f"bind  {mine} "),
            }
            return answers

    answers = asyncio.run(scenario())
    assert answers["no read"].startswith(f"error {written} forbidden: no SMART scope")
    assert answers["unknown"] == "error unknown-sub no such subscription of yours"
    assert answers["theirs"] == f"error {theirs} no such subscription of yours"
    assert answers["deleted"] == f"error {deleted} no such subscription of yours"
    assert answers["hook"] == f"error {hook} not a websocket subscription"
    assert answers["alone"] == "error - bind needs a subscription id"
    assert answers["bad id"] == "error - invalid id"
    assert answers["garbage"] == "error there unknown command: send 'bind <id>'"
    assert answers["binary"].startswith("error - binary frames are not understood")
    assert answers["long"] == "error - frame too long"
    assert answers["mine"] == f"bound {mine}"
    assert answers["again"] == f"bound {mine}"


def test_too_many_binds_and_too_many_errors(idp: Idp, server: Served) -> None:
    a = token(idp, "ws-a")
    entries = [
        {
            "resource": subscription(f"Appointment?identifier=n{i}"),
            "request": {"method": "POST", "url": "Subscription"},
        }
        for i in range(MAX_BINDS + 1)
    ]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    r = httpx.post(server.base, json=bundle, headers={**FHIR, **a}, timeout=60)
    assert r.status_code == 200, r.text
    ids = [e["response"]["location"].split("/")[1] for e in r.json()["entry"]]

    async def scenario() -> tuple[list[str], str, int | None]:
        async with connect(ws_url(server.base), additional_headers=a, open_timeout=10) as ws:
            answers = [await ask(ws, f"bind {sub}") for sub in ids]
            rebound = await ask(ws, f"bind {ids[0]}")  # already bound: no new binding
            for _ in range(100):
                try:
                    await ask(ws, "nonsense")
                except ConnectionClosed:
                    break
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            return answers, rebound, ws.close_code

    answers, rebound, code = asyncio.run(scenario())
    assert answers[:MAX_BINDS] == [f"bound {sub}" for sub in ids[:MAX_BINDS]]
    assert answers[MAX_BINDS] == f"error {ids[MAX_BINDS]} too many bindings (at most {MAX_BINDS})"
    assert rebound == f"bound {ids[0]}"
    assert code == 1008


def test_without_a_token_the_upgrade_is_refused(server: Served) -> None:
    async def scenario() -> None:
        async with connect(ws_url(server.base), open_timeout=10) as ws:
            await ws.recv()

    with pytest.raises(InvalidStatus) as refused:
        asyncio.run(scenario())
    assert refused.value.response.status_code == 403


def test_a_slot_only_token_may_not_watch_appointments_nor_bind_anothers(
    idp: Idp, server: Served
) -> None:
    slots, a = token(idp, "ws-slots"), token(idp, "ws-a")
    r = httpx.post(
        f"{server.base}/Subscription",
        json=subscription("Appointment?status=booked"),
        headers={**FHIR, **slots},
        timeout=10,
    )
    assert r.status_code == 400, r.text
    assert "system/Appointment.read" in r.text
    assert httpx.get(f"{server.base}/Subscription", headers=slots).json()["total"] == 0
    watching = subscribe(server.base, slots, "Slot?status=free")
    appointments = subscribe(server.base, a, "Appointment?status=booked")

    async def scenario() -> tuple[str, str, str]:
        async with (
            connect(ws_url(server.base), additional_headers=slots, open_timeout=10) as ws_s,
            connect(ws_url(server.base), additional_headers=a, open_timeout=10) as ws_a,
        ):
            bound = await ask(ws_s, f"bind {watching}")
            refused = await ask(ws_s, f"bind {appointments}")
            assert await ask(ws_a, f"bind {appointments}") == f"bound {appointments}"
            booking = {
                "resourceType": "Appointment",
                "status": "booked",
                "start": "2026-06-12T16:20:00+02:00",
                "end": "2026-06-12T16:40:00+02:00",
                "participant": [{"actor": {"display": "Dr Ws"}, "status": "accepted"}],
            }
            made = await asyncio.to_thread(
                httpx.post, f"{server.base}/Appointment", json=booking, headers={**FHIR, **a}
            )
            assert made.status_code == 201, made.text
            return bound, refused, str(await asyncio.wait_for(ws_a.recv(), 5))

    bound, refused, heard = asyncio.run(scenario())
    assert bound == f"bound {watching}"
    assert refused == f"error {appointments} no such subscription of yours"
    assert heard == f"ping {appointments}"
