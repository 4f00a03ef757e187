"""An issuer's OpenID discovery document, fetched with bounded time and size, and cached.

Pro Santé Connect publishes it at ``{issuer}/.well-known/wallet-openid-configuration``
(Keycloak's standard ``openid-configuration`` is the fallback). The document must name the
issuer it was fetched for (OpenID Connect Discovery §4.3): otherwise a compromised or
mistyped endpoint could make us trust another issuer's keys. Every fetch of ``auth`` goes
through ``get_json`` here: one place bounds timeouts and response sizes, and refuses plain
HTTP except on loopback (the dev IdP and the tests).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from ipaddress import ip_address
from typing import Any
from urllib.parse import urlsplit

import httpx
import structlog

from auth.errors import IdpUnavailable

log = structlog.get_logger(__name__)

DEFAULT_DISCOVERY_PATH = ".well-known/wallet-openid-configuration"
FALLBACK_DISCOVERY_PATH = ".well-known/openid-configuration"
TIMEOUT = httpx.Timeout(5.0, connect=3.0)
MAX_DOCUMENT_BYTES = 256 * 1024


def new_http_client() -> httpx.AsyncClient:
    """The client ``auth`` uses when none is given: bounded timeouts, no redirects."""
    return httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False)


def check_url(url: str) -> str:
    """``url`` if it is https, or http on a loopback host; else ``IdpUnavailable``."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and _is_loopback(parts.hostname or ""):
        return url
    raise IdpUnavailable(f"the identity provider URL {url!r} is not https")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


async def get_response(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    max_bytes: int = MAX_DOCUMENT_BYTES,
    **kwargs: Any,
) -> tuple[int, str, bytes]:
    """(status, content type, body) of one request, its body cut off at ``max_bytes``
    (an over-long answer is refused, not truncated). Network failures and timeouts are
    ``IdpUnavailable``; the URL is named, never the request's credentials."""
    check_url(url)
    try:
        async with http.stream(
            method, url, timeout=TIMEOUT, follow_redirects=False, **kwargs
        ) as response:
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > max_bytes:
                    raise IdpUnavailable(f"the answer of {url} is larger than {max_bytes} bytes")
            ctype = response.headers.get("content-type", "").split(";")[0].strip().lower()
            return response.status_code, ctype, bytes(body)
    except httpx.HTTPError as exc:
        raise IdpUnavailable(f"{url} could not be reached ({type(exc).__name__})") from exc


def parse_json_object(body: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except ValueError as exc:
        raise IdpUnavailable(f"the {what} is not JSON") from exc
    if not isinstance(value, dict):
        raise IdpUnavailable(f"the {what} is not a JSON object")
    return value


async def get_json(http: httpx.AsyncClient, url: str, what: str) -> dict[str, Any]:
    """A JSON object fetched with GET; any status but 200 is ``IdpUnavailable``."""
    status, _, body = await get_response(http, "GET", url, headers={"Accept": "application/json"})
    if status != 200:
        raise IdpUnavailable(f"the {what} at {url} answered HTTP {status}")
    return parse_json_object(body, what)


class Discovery:
    """The discovery document of one issuer, cached for ``max_age`` seconds; concurrent
    callers share one fetch. A failed refresh keeps serving the previous document."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        issuer: str,
        path: str = DEFAULT_DISCOVERY_PATH,
        *,
        max_age: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        try:
            check_url(issuer)
        except IdpUnavailable as exc:  # a configuration mistake, found at start-up
            raise ValueError(exc.reason) from exc
        self.http, self.issuer, self.path = http, issuer, path.strip("/")
        self.max_age, self.clock = max_age, clock
        self._document: dict[str, Any] | None = None
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()

    async def document(self) -> Mapping[str, Any]:
        if self._document is not None and self.clock() - self._fetched_at < self.max_age:
            return self._document
        async with self._lock:
            if self._document is not None and self.clock() - self._fetched_at < self.max_age:
                return self._document
            try:
                self._document = await self._fetch()
            except IdpUnavailable as exc:
                if self._document is None:
                    raise
                log.warning("discovery refresh failed, keeping the last one", reason=exc.reason)
            self._fetched_at = self.clock()
            return self._document

    async def endpoint(self, name: str) -> str:
        """A URL of the document (``jwks_uri``, ``token_endpoint``...), checked."""
        value = (await self.document()).get(name)
        if not isinstance(value, str) or not value:
            raise IdpUnavailable(f"the discovery document of {self.issuer} has no {name}")
        return check_url(value)

    async def _fetch(self) -> dict[str, Any]:
        base = self.issuer.rstrip("/")
        paths = [self.path]
        if self.path != FALLBACK_DISCOVERY_PATH:
            paths.append(FALLBACK_DISCOVERY_PATH)
        for path in paths:
            url = f"{base}/{path}"
            status, _, body = await get_response(
                self.http, "GET", url, headers={"Accept": "application/json"}
            )
            if status == 404:
                continue
            if status != 200:
                raise IdpUnavailable(f"the discovery document at {url} answered HTTP {status}")
            document = parse_json_object(body, "discovery document")
            if document.get("issuer") != self.issuer:
                raise IdpUnavailable(
                    f"the discovery document at {url} names another issuer than {self.issuer}"
                )
            return document
        raise IdpUnavailable(f"{self.issuer} publishes no discovery document")
