"""``POST [base]/$ingest?format=NAME``: a vendor pushes a feed (the body, in its own format).

The body is bounded by ``FHIR_MAX_BODY_BYTES`` before anything reads it; the feed is mapped
(``mappings``), then each practitioner's is reconciled in its own transaction, as the
caller (``fhir_server/ingest``). Only vendors and admins may call it (``auth/policy.py``,
``may_ingest``); each write is then checked as any other. 200 with the report as an
OperationOutcome (counts per practitioner, every issue with its location), 400 when nothing
could be read (unknown format, unreadable body). See docs/ingest.md.
"""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from fhir_server.api import http
from fhir_server.api.routes import OPERATIONS, Wired
from fhir_server.core import errors
from fhir_server.core.caller import SYSTEM
from fhir_server.ingest.report import to_outcome
from fhir_server.ingest.run import ingest
from fhir_server.settings import Settings
from mappings import registry
from mappings.contract import MappingOptions

DEFAULT_WINDOW_DAYS = MappingOptions().window_days


async def post_ingest(request: Request, w: Wired) -> Response:
    ctx = w.ctx
    if ctx.caller is not SYSTEM:
        decision = ctx.policy.may_ingest(ctx.caller)
        if not decision:
            raise errors.forbidden(decision.reason)
    query = request.query_params
    name = query.get("format")
    if not name:
        raise errors.incorrect("$ingest needs ?format=NAME", code="required")
    try:
        mapper = registry.mapper(name)
    except KeyError as exc:
        raise errors.incorrect(str(exc.args[0]), code="not-supported") from exc
    raw = await http.read_bytes(request, w.settings.max_body_bytes)
    if not raw.strip():
        raise errors.incorrect("the request body is empty", code="structure")
    options = MappingOptions(
        source="body",
        vendor=query.get("vendor", ""),
        booking_url=query.get("booking-url") or booking_page(request, w.settings),
        window_days=_window_days(query.get("window-days")),
        max_bytes=w.settings.max_body_bytes,
        max_depth=w.settings.max_json_depth,
    )
    report = await ingest(ctx, mapper, raw, options, vanished=w.settings.ingest_vanished)
    status = 400 if report.unreadable else 200
    return http.fhir_response(orjson.dumps(to_outcome(report)), status=status)


def booking_page(request: Request, settings: Settings) -> str | None:
    """The booking page of mapped slots' ``comment`` (docs/booking-page.md): the setting,
    else this server's own page when people can sign in to it."""
    if settings.booking_page_url:
        return settings.booking_page_url
    if settings.psc_issuer:
        return http.base_url(request, settings) + "/booking"
    return None


def _window_days(text: str | None) -> int:
    if text is None:
        return DEFAULT_WINDOW_DAYS
    if not text.isdigit() or not 1 <= int(text) <= 366:
        raise errors.incorrect(f"window-days must be 1 to 366, not {text!r}", code="value")
    return int(text)


async def _accept(request: Request) -> None:
    http.check_accept(request)


def router() -> APIRouter:
    """Included before the REST routes: ``POST /{type}`` would otherwise take ``/$ingest``."""
    api = APIRouter(dependencies=[Depends(_accept)])
    api.add_api_route("/$ingest", post_ingest, methods=["POST"], response_class=Response)
    OPERATIONS.add("ingest")
    return api
