"""``wss://…/$subscription-websocket``: the R4 websocket channel (docs/subscriptions.md).

The upgrade is authenticated like any request (a Bearer token in its Authorization header,
or the client certificate); the client sends ``bind <id>`` for each of ITS websocket
Subscriptions (answered ``bound <id>``, or ``error <id> <reason>``) and then receives
``ping <id>`` after each write of this process that its criteria match."""

from __future__ import annotations

import asyncio
import contextlib

import orjson
import structlog
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from fhir_server.api.routes import Wiring
from fhir_server.core import errors
from fhir_server.core.caller import Caller
from fhir_server.core.types import is_valid_id
from fhir_server.subscriptions.hub import MAX_BINDS, Hub
from fhir_server.subscriptions.model import TYPE, Subscription

PATH = "/$subscription-websocket"
log = structlog.get_logger("fhir_server.subscriptions")


async def _bind(wiring: Wiring, caller: Caller, sub_id: str) -> str | None:
    """Why ``caller`` may not bind ``sub_id`` (None: it may)."""
    if not is_valid_id(sub_id):
        return "invalid id"
    stored = await wiring.ctx.store.read(TYPE, sub_id, caller)
    policy = wiring.ctx.policy
    if stored is None or stored.deleted or stored.owner != policy.owner_of(caller):
        return "no such subscription of yours"
    sub = Subscription.of(sub_id, stored.version, stored.owner, orjson.loads(stored.content))
    if sub.channel != "websocket":
        return "not a websocket subscription"
    return None


def router() -> APIRouter:
    api = APIRouter()

    @api.websocket(PATH)
    async def subscription_websocket(websocket: WebSocket) -> None:
        wiring: Wiring = websocket.app.state.wiring
        hub: Hub = websocket.app.state.subscription_hub
        caller = wiring.ctx.who
        if wiring.authn is not None:
            try:
                caller = await wiring.authn.caller(websocket, wiring.ctx)
            except errors.FhirError as exc:
                log.info("subscription websocket refused", reason=str(exc)[:200])
                await websocket.close(code=1008)
                return
        await websocket.accept()
        queue = hub.connection()

        async def pings() -> None:
            while True:
                await websocket.send_text(await queue.get())

        sender = asyncio.create_task(pings())
        binds = 0
        try:
            while True:
                text = (await websocket.receive_text()).strip()
                command, _, sub_id = text.partition(" ")
                sub_id = sub_id.strip()
                if command != "bind":
                    await websocket.send_text(f"error {sub_id} unknown command")
                    continue
                refused = "too many bindings" if binds >= MAX_BINDS else None
                refused = refused or await _bind(wiring, caller, sub_id)
                if refused is not None:
                    await websocket.send_text(f"error {sub_id[:64]} {refused}")
                    continue
                hub.bind(sub_id, queue)
                binds += 1
                await websocket.send_text(f"bound {sub_id}")
        except WebSocketDisconnect:
            pass
        finally:
            hub.unbind_all(queue)
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender

    return api
