"""``GET [base]/$delivery-status``: the outbox as operators see it (docs/delivery.md), for
admins only (``auth/policy.py``, ``may_see_delivery_status``): a ``Parameters`` with one
``channel`` per channel holding messages (counts per state, messages being retried, the
age of the oldest unsent one, the last error) and one ``failed`` per failed message (the
newest first, at most 20). Read from the database: any process answers for all.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from fhir_server.api import http
from fhir_server.api.routes import OPERATIONS, Wired
from fhir_server.core import errors
from fhir_server.core.caller import SYSTEM
from fhir_server.core.fhirtime import utcnow
from fhir_server.delivery.queue import STATES, ChannelStatus, Delivery, Queue

FAILED_SHOWN = 20


async def get_delivery_status(request: Request, w: Wired) -> Response:
    ctx = w.ctx
    if ctx.caller is not SYSTEM:
        decision = ctx.policy.may_see_delivery_status(ctx.caller)
        if not decision:
            raise errors.forbidden(decision.reason)
    queue = Queue(ctx.store, owner="status")  # reads only: never claims
    channels = await queue.status()
    failures = await queue.failures(limit=FAILED_SHOWN)
    return http.fhir_response(orjson.dumps(delivery_status(channels, failures, utcnow())))


def delivery_status(
    channels: dict[str, ChannelStatus], failures: Sequence[Delivery], now: datetime
) -> dict[str, Any]:
    found: dict[str, Any] = {"resourceType": "Parameters"}
    parameters = [_channel(c, now) for c in channels.values()]
    parameters += [_failed(d) for d in failures]
    if parameters:  # FHIR JSON has no empty arrays
        found["parameter"] = parameters
    return found


def _instant(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _channel(status: ChannelStatus, now: datetime) -> dict[str, Any]:
    part: list[dict[str, Any]] = [{"name": "channel", "valueString": status.channel}]
    part += [{"name": s, "valueInteger": status.counts.get(s, 0)} for s in STATES]
    part.append({"name": "retrying", "valueInteger": status.retrying})
    age = status.oldest_age(now)
    if age is not None:
        part.append({"name": "oldestUnsentSeconds", "valueDecimal": round(age, 3)})
    if status.last_error is not None:
        part.append({"name": "lastError", "valueString": status.last_error})
        part.append({"name": "lastErrorKey", "valueString": status.last_error_key})
    return {"name": "channel", "part": part}


def _failed(d: Delivery) -> dict[str, Any]:
    part: list[dict[str, Any]] = [
        {"name": "id", "valueInteger": d.id},
        {"name": "channel", "valueString": d.channel},
        {"name": "key", "valueString": d.key},
    ]
    if d.version is not None:
        part.append({"name": "version", "valueInteger": d.version})
    if d.last_status is not None:
        part.append({"name": "status", "valueInteger": d.last_status})
    if d.last_error is not None:
        part.append({"name": "error", "valueString": d.last_error})
    part.append({"name": "attempts", "valueInteger": d.attempts})
    part.append({"name": "created", "valueInstant": _instant(d.created)})
    return {"name": "failed", "part": part}


async def _accept(request: Request) -> None:
    http.check_accept(request)


def router() -> APIRouter:
    """Included before the REST routes: ``GET /{type}`` would otherwise take it."""
    api = APIRouter(dependencies=[Depends(_accept)])
    api.add_api_route(
        "/$delivery-status", get_delivery_status, methods=["GET"], response_class=Response
    )
    OPERATIONS.add("delivery-status")
    return api
