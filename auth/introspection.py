"""Asking PSC whether a token is active (OAuth 2.0 Token Introspection, RFC 7662).

The alternative to local checks (``auth/tokens.py``) that PSC documents for APIs: the API
posts the token with its own client credentials (``client_secret_basic`` or
``private_key_jwt``) and gets ``active`` and the token's claims. ``active: false`` is a
refusal. Answers are cached, keyed by a hash of the token (never the token itself), until the
token's ``exp`` but never longer than ``max_cache_seconds``; refusals for a short while; the
cache is bounded so a flood of distinct tokens only evicts old entries.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any
from urllib.parse import urlencode

import httpx

from auth.client_auth import client_auth
from auth.discovery import (
    DEFAULT_DISCOVERY_PATH,
    Discovery,
    get_response,
    new_http_client,
    parse_json_object,
)
from auth.errors import IdpUnavailable, TokenRejected
from auth.principal import scopes_of
from auth.tokens import VerifiedToken

TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/=")
FORM = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}


@dataclass(frozen=True)
class IntrospectionConfig:
    """The issuer to ask, with this server's credentials there, and what an active token
    must still carry (same rules as ``IssuerConfig``)."""

    issuer: str
    client_id: str
    client_secret: str | None = None
    private_key_jwk: Mapping[str, Any] | None = None
    token_endpoint_auth_method: str | None = None
    allowed_clients: frozenset[str] | None = None  # azp allow-list; None: any client
    required_acr: str | None = "eidas1"
    discovery_path: str = DEFAULT_DISCOVERY_PATH


@dataclass
class _Entry:
    until: float
    result: VerifiedToken | TokenRejected


class Introspector:
    def __init__(
        self,
        config: IntrospectionConfig,
        *,
        http: httpx.AsyncClient | None = None,
        max_token_bytes: int = 8192,
        max_cache_seconds: float = 300.0,
        negative_cache_seconds: float = 10.0,
        max_cache_entries: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._own_http = http is None
        self.http = http or new_http_client()
        self.discovery = Discovery(self.http, config.issuer, config.discovery_path)
        self._auth = client_auth(
            config.client_id,
            secret=config.client_secret,
            private_key_jwk=config.private_key_jwk,
            method=config.token_endpoint_auth_method,
        )
        self.max_token_bytes = max_token_bytes
        self.max_cache_seconds, self.negative_cache_seconds = (
            max_cache_seconds,
            negative_cache_seconds,
        )
        self.max_cache_entries, self.clock = max_cache_entries, clock
        self._cache: OrderedDict[bytes, _Entry] = OrderedDict()

    async def aclose(self) -> None:
        if self._own_http:
            await self.http.aclose()

    async def introspect(self, token: str) -> VerifiedToken:
        """The token's claims if PSC says it is active and it passes our checks; else
        ``TokenRejected`` (``IdpUnavailable`` when PSC cannot answer: nothing is cached)."""
        if not isinstance(token, str) or len(token) > self.max_token_bytes:
            raise TokenRejected(f"the token is larger than {self.max_token_bytes} bytes")
        if not token or not TOKEN_CHARS.issuperset(token):
            raise TokenRejected("the token has characters a bearer token cannot have")
        key = hashlib.sha256(token.encode()).digest()
        now = self.clock()
        entry = self._cache.get(key)
        if entry is not None and entry.until > now:
            self._cache.move_to_end(key)
            if isinstance(entry.result, TokenRejected):
                raise TokenRejected(entry.result.reason)
            return entry.result
        try:
            result: VerifiedToken = self._check(await self._ask(token), now)
        except TokenRejected as exc:
            self._remember(key, _Entry(now + self.negative_cache_seconds, exc))
            raise
        until = min(result.expires_at.timestamp(), now + self.max_cache_seconds)
        self._remember(key, _Entry(until, result))
        return result

    def _remember(self, key: bytes, entry: _Entry) -> None:
        self._cache[key] = entry
        self._cache.move_to_end(key)
        while len(self._cache) > self.max_cache_entries:
            self._cache.popitem(last=False)

    async def _ask(self, token: str) -> dict[str, Any]:
        endpoint = await self.discovery.endpoint("introspection_endpoint")
        body = urlencode({"token": token, "token_type_hint": "access_token"})
        url, headers, body = self._auth.prepare("POST", endpoint, dict(FORM), body)
        status, _, answer = await get_response(
            self.http, "POST", url, headers=headers, content=body, max_bytes=64 * 1024
        )
        if status != 200:
            raise IdpUnavailable(f"the introspection endpoint answered HTTP {status}")
        return parse_json_object(answer, "introspection answer")

    def _check(self, answer: Mapping[str, Any], now: float) -> VerifiedToken:
        config = self.config
        if answer.get("active") is not True:
            raise TokenRejected("the token is not active (introspection)")
        if answer.get("iss") not in (None, config.issuer):
            raise TokenRejected("the token's issuer (iss) is not trusted here")
        exp = answer.get("exp")
        if exp is not None:
            if not isinstance(exp, int | float) or isinstance(exp, bool):
                raise TokenRejected("the token's expiry (exp) is not a date")
            if exp <= now:
                raise TokenRejected("the token has expired (exp)")
            expires_at = float(exp)
        else:
            expires_at = now + self.max_cache_seconds
        acr = answer.get("acr")
        if config.required_acr is not None and acr != config.required_acr:
            raise TokenRejected(
                f"the token's authentication level (acr) is not {config.required_acr}"
            )
        client_id = answer.get("azp") or answer.get("client_id")
        if not isinstance(client_id, str) or not client_id:
            client_id = None
        if config.allowed_clients is not None and client_id not in config.allowed_clients:
            raise TokenRejected("the token's client (azp) is not allowed here")
        sub = answer.get("sub")
        return VerifiedToken(
            issuer=config.issuer,
            subject=sub if isinstance(sub, str) and sub else None,
            client_id=client_id,
            scopes=scopes_of(answer),
            acr=acr if isinstance(acr, str) else None,
            expires_at=datetime.fromtimestamp(expires_at, UTC),
            claims=MappingProxyType(dict(answer)),
        )
