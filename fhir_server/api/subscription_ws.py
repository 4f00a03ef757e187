"""``wss://…/$subscription-websocket``: the R4 websocket channel (docs/subscriptions.md).

The upgrade is authenticated like any request (a Bearer token in its Authorization header,
or the client certificate); the client sends ``bind <id>`` for each of ITS websocket
Subscriptions (answered ``bound <id>``, or ``error <id> <reason>``) and then receives
``ping <id>`` after each write that its criteria match, whichever process made it
(``subscriptions/hub.py``). Every frame that is not a valid bind gets an ``error`` frame
(``-`` in place of an id it could not read); a connection that keeps sending them is
closed (1008). Keepalive is the websocket protocol's own ping/pong (uvicorn's, every 20 s).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

import orjson
import structlog
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from fhir_server.api.routes import Wiring
from fhir_server.core import errors
from fhir_server.core.caller import Caller
from fhir_server.core.types import is_valid_id
from fhir_server.subscriptions.hub import MAX_BINDS, Hub
from fhir_server.subscriptions.model import TYPE, Subscription

PATH = "/$subscription-websocket"
MAX_FRAME = 200  # characters of one command: "bind " and an id (64 at most) fit easily
MAX_ERRORS = 50  # refused frames one connection may send before it is closed
log = structlog.get_logger("fhir_server.subscriptions")


async def _bind(wiring: Wiring, caller: Caller, sub_id: str) -> str | None:
    """Why ``caller`` may not bind ``sub_id`` (None: it may)."""
    if not is_valid_id(sub_id):
        return "invalid id"
    policy = wiring.ctx.policy
    allowed = policy.may(caller, "read", TYPE)
    if not allowed:
        return f"forbidden: {allowed.reason}"
    # read as the caller: a Subscription is visible to its owner only (admin: any), so
    # another's answers as an unknown one (reads do not return the owner column)
    try:
        stored = await wiring.ctx.store.read(TYPE, sub_id, caller)
    except errors.FhirError as exc:  # the database busy or timed out: the client may retry
        return f"not bound now, retry: {exc}"[:200]
    if stored is None or stored.deleted:
        return "no such subscription of yours"
    sub = Subscription.of(sub_id, stored.version, stored.owner, orjson.loads(stored.content))
    if sub.channel != "websocket":
        return "not a websocket subscription"
    return None


def _frame(message: Mapping[str, Any]) -> tuple[str, str] | None:
    """(command, argument) of a received frame, or None for a frame that is not text."""
    text = message.get("text")
    if not isinstance(text, str):
        return None
    command, _, argument = text.strip().partition(" ")
    return command, argument.strip()


async def _session(websocket: WebSocket, wiring: Wiring, hub: Hub, caller: Caller) -> None:
    """Answer the client's frames until it goes; its bindings end with it."""
    queue = hub.connection()
    bound: set[str] = set()
    refused = 0

    async def pings() -> None:
        while True:
            await websocket.send_text(await queue.get())

    async def error(sub_id: str, reason: str) -> bool:
        """Send ``error``; False once the client has had too many."""
        nonlocal refused
        refused += 1
        shown = sub_id if is_valid_id(sub_id) else "-"
        await websocket.send_text(f"error {shown} {reason}")
        return refused < MAX_ERRORS

    sender = asyncio.create_task(pings())
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            frame = _frame(message)
            if frame is None:
                ok = await error("-", "binary frames are not understood: send 'bind <id>'")
            elif len(frame[0]) + len(frame[1]) > MAX_FRAME:
                ok = await error("-", "frame too long")
            elif frame[0] != "bind":
                ok = await error(frame[1], "unknown command: send 'bind <id>'")
            elif not frame[1]:
                ok = await error("-", "bind needs a subscription id")
            elif frame[1] not in bound and len(bound) >= MAX_BINDS:
                ok = await error(frame[1], f"too many bindings (at most {MAX_BINDS})")
            elif (why := await _bind(wiring, caller, frame[1])) is not None:
                ok = await error(frame[1], why)
            else:
                hub.bind(frame[1], queue)
                bound.add(frame[1])
                await websocket.send_text(f"bound {frame[1]}")
                ok = True
            if not ok:
                await websocket.close(code=1008, reason="too many refused frames")
                return
    finally:
        hub.unbind_all(queue)
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await sender


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
        try:
            await _session(websocket, wiring, hub, caller)
        except WebSocketDisconnect:
            pass
        except (OSError, RuntimeError) as exc:  # the client went mid-send
            if websocket.client_state != WebSocketState.DISCONNECTED:
                log.info("subscription websocket ended", error=type(exc).__name__)

    return api
