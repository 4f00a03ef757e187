"""HTTP details shared by the routes: media types, bodies, base URL, Prefer, headers."""

from __future__ import annotations

import ipaddress
from email.utils import format_datetime
from typing import Any

from fastapi import Request
from starlette.responses import Response

from fhir_server.api.outcomes import FHIR_JSON
from fhir_server.core import errors, json_input
from fhir_server.core.errors import Issue
from fhir_server.core.outcomes import outcome_bytes
from fhir_server.settings import Settings
from fhir_server.storage.port import Stored

JSON_TYPES = frozenset({"application/fhir+json", "application/json+fhir", "application/json"})
PATCH_TYPES = frozenset({"application/json-patch+json"})
_FORMAT_ALIASES = {
    "json": "application/fhir+json",
    "application/fhir+json": "application/fhir+json",
    "application/json": "application/fhir+json",
    "application/json+fhir": "application/fhir+json",
}


def check_accept(request: Request) -> None:
    """Only JSON is served: ``_format`` or ``Accept`` asking for something else is 406."""
    fmt = request.query_params.get("_format")
    if fmt is not None:
        if fmt.split(";")[0].strip() not in _FORMAT_ALIASES:
            raise errors.not_acceptable(f"_format {fmt!r} is not supported; use json")
        return
    accept = request.headers.get("accept")
    if not accept:
        return
    for part in accept.split(","):
        media = part.split(";")[0].strip().lower()
        if media in JSON_TYPES or media in ("*/*", "application/*", "") or media.endswith("+json"):
            return
    raise errors.not_acceptable(
        f"cannot answer in {accept!r}; this server speaks application/fhir+json"
    )


async def read_body(
    request: Request, settings: Settings, allowed: frozenset[str] = JSON_TYPES
) -> Any:
    """The parsed JSON body; 415 for another media type, 413 over the size limit, 400 if not
    JSON, holding a control character or nested too deep (``core.json_input``: checked
    before anything walks the body)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in allowed:
        raise errors.unsupported_media_type(
            f"Content-Type {media or '(none)'!r} is not accepted here; use "
            + " or ".join(sorted(allowed))
        )
    raw = await read_bytes(request, settings.max_body_bytes)
    if not raw.strip():
        raise errors.incorrect("the request body is empty", code="structure")
    return json_input.parse(raw, settings.max_json_depth)


async def read_bytes(request: Request, limit: int) -> bytes:
    """The raw body, 413 as soon as it is over ``limit`` bytes (declared or streamed)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise errors.too_large(f"the body is {declared} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise errors.too_large(f"the body is larger than the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def base_url(request: Request, settings: Settings) -> str:
    """Configured base URL, else the request's, honouring X-Forwarded-* from trusted proxies."""
    if settings.base_url:
        return settings.base_url
    scheme = request.url.scheme
    host = request.headers.get("host") or f"{request.url.hostname}:{request.url.port}"
    prefix = request.scope.get("root_path", "")
    client = request.client.host if request.client else ""
    if trusted_address(client, settings.trusted_proxies):
        scheme = request.headers.get("x-forwarded-proto", scheme).split(",")[0].strip()
        host = request.headers.get("x-forwarded-host", host).split(",")[0].strip()
        prefix = request.headers.get("x-forwarded-prefix", prefix).rstrip("/")
    return f"{scheme}://{host}{prefix}"


def trusted_address(client: str, proxies: list[str]) -> bool:
    """Whether ``client`` is one of ``proxies`` (addresses or networks)."""
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return False
    for proxy in proxies:
        try:
            if address in ipaddress.ip_network(proxy, strict=False):
                return True
        except ValueError:
            continue
    return False


def prefer_return(request: Request) -> str:
    prefer = request.headers.get("prefer", "")
    for part in prefer.split(","):
        key, _, value = part.strip().partition("=")
        if key.strip() == "return":
            return value.strip().strip('"')
    return "representation"


def fhir_response(
    body: bytes, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(body, status_code=status, media_type=FHIR_JSON, headers=headers)


def version_headers(stored: Stored) -> dict[str, str]:
    return {
        "ETag": f'W/"{stored.version}"',
        "Last-Modified": format_datetime(stored.last_updated, usegmt=True),
    }


def write_response(
    request: Request, stored: Stored, status: int, base: str, *, location: bool
) -> Response:
    """Create/update answer honouring ``Prefer: return=minimal|representation|OperationOutcome``."""
    headers = version_headers(stored)
    if location:
        headers["Location"] = f"{base}/{stored.res_type}/{stored.res_id}/_history/{stored.version}"
    prefer = prefer_return(request)
    if prefer == "minimal":
        return Response(status_code=status, headers=headers)
    if prefer == "OperationOutcome":
        verb = "created" if status == 201 else "updated"
        issue = Issue(
            "informational",
            f"{stored.res_type}/{stored.res_id} {verb} (version {stored.version})",
            "information",
        )
        return fhir_response(outcome_bytes([issue]), status, headers)
    return fhir_response(stored.content, status, headers)
