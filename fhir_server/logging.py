"""Structured logs (structlog). Never log tokens or request bodies: only identifiers.

Every line goes through one stderr handler and one renderer (``FHIR_LOG_FORMAT``: console or
json): the server's own structlog events, and the standard-library records of uvicorn,
Alembic and the rest, so that a JSON log is JSON on every line.

``AccessLog`` writes one line per HTTP request: method, path, the *names* of the query
parameters, status, duration, client address and, once authenticated, who called (role,
client id, national id of a person; never a credential). Query values are left out: a FHIR search
carries identifiers and names (``Practitioner?identifier=...|810001234567``) that do not
belong in logs.
"""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import parse_qsl

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# uvicorn configures these with handlers of their own unless told not to (``log_config=None``);
# cleared here too, so that their records reach the root handler whoever started uvicorn.
_FOREIGN = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


def configure(level: str = "info", fmt: str = "console") -> None:
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer()
    )
    handler = logging.StreamHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(numeric)
    for name in _FOREIGN:
        foreign = logging.getLogger(name)
        foreign.handlers.clear()
        foreign.propagate = True
    # Alembic announces every migration step at INFO; only its problems are news. httpx
    # logs every URL it requests at INFO (token introspection, discovery); aiosqlite and
    # SQLAlchemy's engine log every statement with its parameters at DEBUG (resources'
    # contents, search values): only their problems, whatever FHIR_LOG_LEVEL says.
    for name in ("alembic", "httpx", "aiosqlite", "sqlalchemy.engine"):
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        cache_logger_on_first_use=True,
    )


access_log = structlog.get_logger("fhir_server.access")


def _param_names(query_string: bytes) -> list[str]:
    names: list[str] = []
    for name, _value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if name not in names:
            names.append(name)
    return names


def _add_caller(fields: dict[str, Any], scope: Scope) -> None:
    """Who called, as the authenticator left it in ``request.state.caller`` (the audit
    trail's ``Caller``; read by name: this module sits below every package)."""
    state = scope.get("state")
    caller = state.get("caller") if state else None
    if caller is None:
        return
    fields["role"] = getattr(caller, "role", None)
    for name, key in (("client_id", "client_id"), ("user_id", "user")):
        value = getattr(caller, name, None)
        if value:
            fields[key] = value


class AccessLog:
    """ASGI middleware: one ``request`` line per HTTP request, once it is answered."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the application fails before answering

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            client = scope.get("client")
            fields: dict[str, Any] = {
                "method": scope["method"],
                "path": scope["path"],
                "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                "client": client[0] if client else None,
            }
            if scope.get("query_string"):
                fields["params"] = _param_names(scope["query_string"])
            _add_caller(fields, scope)
            access_log.info("request", **fields)
