"""ASGI middleware: every HTTP request, once answered, is handed to the audit writer.

Pure ASGI (not Starlette's ``BaseHTTPMiddleware``, which costs a task and a stream per
request): it notes the status, ``Location`` and ``ETag`` of the answer and, for errors and
Bundle answers only, the first few kilobytes of the body (the diagnostic, the Bundle's type),
and the form of a ``POST …/_search`` (its parameters are the search's query); then,
after the answer has gone out, it queues one ``Access`` tuple. Building and storing the
AuditEvent happen in the writer's task (``fhir_server/audit/writer.py``).

Who called comes from ``request.state.caller``, which the authenticator sets
(``authn.py``); with ``FHIR_AUTH=none`` every request is the anonymous caller of
``FHIR_DEFAULT_ROLE``.
"""

from __future__ import annotations

import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fhir_server.audit.record import Access
from fhir_server.audit.writer import AuditWriter
from fhir_server.core.caller import Caller

_BODY_KEPT = 4096  # bytes of an error answer kept for its diagnostic
# A batch or transaction answer names what each entry wrote in ``response.location``
# (``Type/id/_history/n``); no resource this server serves has a string ``location``.
_ENTRY_LOCATION = re.compile(rb'"location"\s*:\s*"([^"\\]{1,300})"')
ENTITIES_KEPT = 1000  # entries of one Bundle recorded, at most


class AuditTrail:
    def __init__(self, app: ASGIApp, writer: AuditWriter, anonymous: Caller | None) -> None:
        self.app = app
        self.writer = writer
        self.anonymous = anonymous  # the caller of every request when FHIR_AUTH=none

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.time()
        status = 500  # what the client gets if the application fails before answering
        location: str | None = None
        etag: str | None = None
        bundle = scope["method"] == "POST" and scope["path"] == "/"  # batch or transaction
        keep = bundle  # its answer's start says which
        body = b""
        written: list[bytes] = []  # what a batch or transaction wrote

        async def sending(message: Message) -> None:
            nonlocal status, location, etag, keep, body
            if message["type"] == "http.response.start":
                status = int(message["status"])
                keep = keep or status >= 400
                for name, value in message.get("headers", ()):
                    if name == b"location":
                        location = value.decode("latin-1")
                    elif name == b"etag":
                        etag = value.decode("latin-1")
            else:
                chunk = message.get("body", b"")
                if keep and len(body) < _BODY_KEPT:
                    body += chunk[: _BODY_KEPT - len(body)]
                if bundle and status < 400 and len(written) < ENTITIES_KEPT:
                    found = _ENTRY_LOCATION.findall(chunk)
                    written.extend(found[: ENTITIES_KEPT - len(written)])
            await send(message)

        query: bytes = scope.get("query_string", b"")
        form = b""
        if scope["method"] == "POST" and scope["path"].endswith("/_search"):
            # a search sent as a form: its parameters are the query the trail records

            async def receiving() -> Message:
                nonlocal form
                message = await receive()
                if message["type"] == "http.request" and len(form) < _BODY_KEPT:
                    form += message.get("body", b"")[: _BODY_KEPT - len(form)]
                return message

            downstream: Receive = receiving
        else:
            downstream = receive
        try:
            await self.app(scope, downstream, sending)
        finally:
            if form:
                query = b"&".join(part for part in (query, form) if part)
            state = scope.get("state")
            caller = state.get("caller") if state else None
            access = Access(
                started,
                scope["method"],
                scope["path"],
                query,
                status,
                caller if isinstance(caller, Caller) else self.anonymous,
                client[0] if (client := scope.get("client")) else None,
                location,
                etag,
                body,
                tuple(written),
            )
            if not self.writer.offer(access):
                await self.writer.submit(access)
