"""What one access leaves for the audit trail: a tuple built in the request path.

Everything costly (classifying the interaction, building the AuditEvent, reading an error's
diagnostic) waits for the writer's task (``events.py``), off the request path.
"""

from __future__ import annotations

from typing import NamedTuple

from fhir_server.core.caller import Caller


class Access(NamedTuple):
    started: float  # time.time() when the request arrived
    method: str
    path: str  # the URL path, without the query
    query: bytes  # the raw query string
    status: int
    caller: Caller | None  # None: the request was not identified (401, public pages)
    client: str | None  # the client's address as the server saw it
    location: str | None  # the response's Location header (created, updated resources)
    etag: str | None = None  # the response's ETag (the version an update wrote)
    body: bytes = b""  # the start of an error answer (its diagnostic) or of a Bundle's
    written: tuple[bytes, ...] = ()  # a batch's or transaction's entries' locations
