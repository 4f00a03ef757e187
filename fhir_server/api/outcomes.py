"""The one place errors become HTTP responses: always an OperationOutcome, never HTML."""

from __future__ import annotations

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from fhir_server.core.errors import FhirError, Issue
from fhir_server.core.outcomes import outcome_bytes

FHIR_JSON = "application/fhir+json; charset=utf-8"
log = structlog.get_logger(__name__)

_HTTP_CODES = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    409: "conflict",
    410: "deleted",
    412: "conflict",
    413: "too-costly",
    415: "not-supported",
    422: "processing",
    429: "throttled",
    503: "transient",
}


def outcome_response(
    status: int, issues: list[Issue], headers: dict[str, str] | None = None
) -> Response:
    return Response(
        outcome_bytes(issues), status_code=status, media_type=FHIR_JSON, headers=headers
    )


async def _fhir_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, FhirError)
    return outcome_response(exc.status, exc.issues, exc.headers)


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "exception")
    detail = exc.detail if isinstance(exc.detail, str) else "request failed"
    if exc.status_code == 404:
        detail = "no such endpoint on this FHIR server"
    return outcome_response(exc.status_code, [Issue(code, detail)], dict(exc.headers or {}))


async def _validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    issues = [
        Issue(
            "invalid",
            str(err.get("msg")),
            expression=(".".join(str(p) for p in err.get("loc", ())),),
        )
        for err in exc.errors()
    ]
    return outcome_response(400, issues)


async def _unexpected(request: Request, exc: Exception) -> Response:
    # The trace goes to the log, never to the client.
    log.exception("unhandled error", path=request.url.path, method=request.method)
    return outcome_response(500, [Issue("exception", "internal server error")])


def install(app: FastAPI) -> None:
    app.add_exception_handler(FhirError, _fhir_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)
