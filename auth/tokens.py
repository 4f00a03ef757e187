"""Checking Pro Santé Connect access tokens and ID tokens locally (JWS with joserfc).

The checks run cheapest and least trusting first, and each refusal names the failed check:
size (before any parsing), JWS compact shape, ``alg`` in an allow-list (asymmetric only:
``none`` and HMAC are refused, so a public key can never be used as an HMAC secret), ``iss``
among the configured issuers (exact match, read before the signature only to pick the keys
and never used otherwise), signature with the issuer's cached JWKS (``auth/jwks.py``), then
``exp``/``nbf``/``iat`` with a small leeway, ``acr``, the client (``azp`` allow-list: PSC
access tokens have no ``aud``), ``aud`` when configured, and ``nonce`` for ID tokens.
"""

from __future__ import annotations

import hmac
import json
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import httpx
from joserfc import jws
from joserfc.errors import ExpiredTokenError, JoseError
from joserfc.jwt import JWTClaimsRegistry

from auth.discovery import DEFAULT_DISCOVERY_PATH, Discovery, new_http_client
from auth.errors import TokenRejected
from auth.jwks import ALG_KEY_TYPES, JwksCache
from auth.principal import scopes_of

ALLOWED_ALGS = frozenset(ALG_KEY_TYPES)
# Three base64url segments: the only serialization accepted (no JSON JWS, no JWE).
COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class IssuerConfig:
    """An issuer whose tokens are accepted, and what its tokens must carry."""

    issuer: str
    allowed_clients: frozenset[str]  # azp allow-list (the applications people signed in to)
    required_acr: str | None = "eidas1"
    audience: str | None = None  # when set, ``aud`` must contain it
    discovery_path: str = DEFAULT_DISCOVERY_PATH
    # Clients whose client-credentials tokens are accepted too: they speak for the system,
    # not a person, so no ``acr`` is required of them (Keycloak gives service accounts "1").
    system_clients: frozenset[str] = frozenset()


@dataclass(frozen=True)
class VerifiedToken:
    """A token whose every check passed."""

    issuer: str
    subject: str | None  # PSC's technical ``sub`` (client-credentials tokens may lack it)
    client_id: str | None  # azp (or client_id, RFC 9068)
    scopes: frozenset[str]
    acr: str | None
    expires_at: datetime
    claims: Mapping[str, Any]


class TokenVerifier:
    """Verifies tokens of the configured issuers. One per process: it holds the JWKS caches.

    ``clock`` is the monotonic clock of the JWKS/discovery caches (token times use the wall
    clock); ``jwks_min_refresh_seconds`` bounds refreshes caused by unknown ``kid``s.
    """

    def __init__(
        self,
        issuers: Iterable[IssuerConfig],
        *,
        http: httpx.AsyncClient | None = None,
        leeway_seconds: int = 30,
        max_token_bytes: int = 8192,
        jwks_min_refresh_seconds: float = 60.0,
        jwks_max_age_seconds: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._own_http = http is None
        self.http = http or new_http_client()
        self.leeway, self.max_token_bytes = leeway_seconds, max_token_bytes
        self.issuers: dict[str, IssuerConfig] = {c.issuer: c for c in issuers}
        self.discoveries: dict[str, Discovery] = {
            c.issuer: Discovery(self.http, c.issuer, c.discovery_path, clock=clock)
            for c in self.issuers.values()
        }
        self.jwks: dict[str, JwksCache] = {
            name: JwksCache(
                self.http,
                discovery,
                min_refresh_interval=jwks_min_refresh_seconds,
                max_age=jwks_max_age_seconds,
                clock=clock,
            )
            for name, discovery in self.discoveries.items()
        }

    async def aclose(self) -> None:
        if self._own_http:
            await self.http.aclose()

    async def verify_access_token(self, token: str) -> VerifiedToken:
        """An access token of a configured issuer, from an allowed client."""
        config, claims = await self.verify_signed(token)
        # Keycloak marks its tokens: an ID or refresh token is not an access token.
        if str(claims.get("typ", "Bearer")).lower() != "bearer":
            raise TokenRejected("the token is not an access token (typ)")
        self._check_times(claims, require_iat=False)
        client_id = _text(claims.get("azp")) or _text(claims.get("client_id"))
        if client_id is None:
            raise TokenRejected("the token names no client (azp)")
        if client_id in config.system_clients:
            pass  # a system's own token: no person, no authentication level
        elif client_id in config.allowed_clients:
            self._check_acr(config, claims)
        else:
            raise TokenRejected("the token's client (azp) is not allowed here")
        if config.audience is not None and config.audience not in _audiences(claims):
            raise TokenRejected("the token is not meant for this server (aud)")
        return _verified(config, claims, client_id)

    async def verify_id_token(self, token: str, *, client_id: str, nonce: str) -> VerifiedToken:
        """An OpenID Connect ID token issued to ``client_id`` for the login that sent
        ``nonce`` (OpenID Connect Core §3.1.3.7)."""
        config, claims = await self.verify_signed(token)
        if str(claims.get("typ", "ID")).lower() != "id":
            raise TokenRejected("the token is not an ID token (typ)")
        self._check_times(claims, require_iat=True)
        if not _text(claims.get("sub")):
            raise TokenRejected("the ID token names no subject (sub)")
        audiences = _audiences(claims)
        if client_id not in audiences:
            raise TokenRejected("the ID token is not meant for this client (aud)")
        azp = claims.get("azp")
        if (azp is not None or len(audiences) > 1) and azp != client_id:
            raise TokenRejected("the ID token was issued to another client (azp)")
        got = claims.get("nonce")
        if not isinstance(got, str) or not hmac.compare_digest(got.encode(), nonce.encode()):
            raise TokenRejected("the ID token does not belong to this login (nonce)")
        self._check_acr(config, claims)
        return _verified(config, claims, client_id)

    async def verify_signed(self, token: str) -> tuple[IssuerConfig, dict[str, Any]]:
        """Shape, algorithm, issuer and signature of a JWS from a configured issuer; its
        claims, whose times and audience are still to be checked by the caller."""
        if not isinstance(token, str) or len(token) > self.max_token_bytes:
            raise TokenRejected(f"the token is larger than {self.max_token_bytes} bytes")
        if not COMPACT_JWS.fullmatch(token):
            raise TokenRejected("the token is not a signed JWT (JWS compact serialization)")
        try:
            unverified = jws.extract_compact(token.encode("ascii"))
        except (JoseError, ValueError) as exc:
            raise TokenRejected("the token's header cannot be read") from exc
        header = unverified.protected
        alg = header.get("alg")
        if alg not in ALLOWED_ALGS:
            raise TokenRejected(
                f"the token's algorithm (alg) is not one of {', '.join(sorted(ALLOWED_ALGS))}"
            )
        if header.get("crit") is not None or header.get("b64") is not None:
            raise TokenRejected("the token has critical header parameters (crit)")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenRejected("the token names no signing key (kid)")
        claims = _claims(unverified.payload)
        iss = claims.get("iss")
        config = self.issuers.get(iss) if isinstance(iss, str) else None
        if config is None:
            raise TokenRejected("the token's issuer (iss) is not trusted here")
        key = await self.jwks[config.issuer].key_for(kid, alg)
        try:
            valid = jws.validate_compact(unverified, key, algorithms=[alg])
        except JoseError as exc:
            raise TokenRejected("the token's signature cannot be checked") from exc
        if not valid:
            raise TokenRejected("the token's signature is not valid")
        return config, claims

    def _check_times(self, claims: Mapping[str, Any], *, require_iat: bool) -> None:
        essential: dict[str, Any] = {"exp": {"essential": True}}
        if require_iat:
            essential["iat"] = {"essential": True}
        registry = JWTClaimsRegistry(leeway=self.leeway, **essential)
        times = {k: claims[k] for k in ("exp", "nbf", "iat") if k in claims}
        try:
            registry.validate(times)
        except ExpiredTokenError as exc:
            raise TokenRejected("the token has expired (exp)") from exc
        except JoseError as exc:
            claim = getattr(exc, "claim", None) or ",".join(essential)
            what = {
                "exp": "the token's expiry (exp) is missing or not a date",
                "nbf": "the token is not valid yet (nbf)",
                "iat": "the token's issue time (iat) is missing or in the future",
            }
            raise TokenRejected(what.get(claim, f"the token's {claim} is not valid")) from exc

    @staticmethod
    def _check_acr(config: IssuerConfig, claims: Mapping[str, Any]) -> None:
        if config.required_acr is None:
            return
        acr = claims.get("acr")
        if acr is None:
            raise TokenRejected(
                f"the token has no authentication level (acr {config.required_acr})"
            )
        if acr != config.required_acr:
            raise TokenRejected(
                f"the token's authentication level (acr) is not {config.required_acr}"
            )


def _claims(payload: bytes) -> dict[str, Any]:
    try:
        claims = json.loads(payload)
    except ValueError as exc:
        raise TokenRejected("the token's claims are not JSON") from exc
    if not isinstance(claims, dict):
        raise TokenRejected("the token's claims are not a JSON object")
    return claims


def _verified(config: IssuerConfig, claims: dict[str, Any], client_id: str) -> VerifiedToken:
    return VerifiedToken(
        issuer=config.issuer,
        subject=_text(claims.get("sub")),
        client_id=client_id,
        scopes=scopes_of(claims),
        acr=_text(claims.get("acr")),
        expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
        claims=MappingProxyType(claims),
    )


def _audiences(claims: Mapping[str, Any]) -> list[str]:
    aud = claims.get("aud")
    if isinstance(aud, str):
        return [aud]
    if isinstance(aud, list):
        return [a for a in aud if isinstance(a, str)]
    return []


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
