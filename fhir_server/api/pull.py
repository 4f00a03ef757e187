"""``GET [base]/$pull-status``: the freshness of every pulled source (pull mode), for
admins only (``auth/policy.py``, ``may_see_pull_status``): a ``Parameters`` with one
``source`` per configured source (last success, last error, failures, slot count, next
due, lease holder), read from the database, so any process answers for all of them. Each
source is also an ``Endpoint`` (``pull-NAME``). See docs/pull.md.
"""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from fhir_server.api import http
from fhir_server.api.routes import OPERATIONS, Wired
from fhir_server.core import errors
from fhir_server.core.caller import SYSTEM
from fhir_server.ingest.pull.scheduler import Puller
from fhir_server.ingest.pull.status import pull_status


async def get_pull_status(request: Request, w: Wired) -> Response:
    ctx = w.ctx
    if ctx.caller is not SYSTEM:
        decision = ctx.policy.may_see_pull_status(ctx.caller)
        if not decision:
            raise errors.forbidden(decision.reason)
    puller: Puller | None = getattr(request.app.state, "pull", None)
    if puller is None:
        return http.fhir_response(orjson.dumps(pull_status([], {})))
    names = [s.name for s in puller.sources]
    states = await puller.states.all(names)
    return http.fhir_response(orjson.dumps(pull_status(puller.sources, states)))


async def _accept(request: Request) -> None:
    http.check_accept(request)


def router() -> APIRouter:
    """Included before the REST routes: ``GET /{type}`` would otherwise take it."""
    api = APIRouter(dependencies=[Depends(_accept)])
    api.add_api_route("/$pull-status", get_pull_status, methods=["GET"], response_class=Response)
    OPERATIONS.add("pull-status")
    return api
