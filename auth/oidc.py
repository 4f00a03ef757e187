"""The Pro Santé Connect login: OpenID Connect authorization code flow with PKCE.

``start_login`` builds the authorization URL (``response_type=code``, ``scope=openid
scope_all``, ``acr_values=eidas1``, PKCE S256, random ``state`` and ``nonce``); the caller
keeps the returned ``LoginRequest`` (the web layer keeps it in a signed cookie).
``finish_login`` checks the returned ``state`` in constant time before any network call,
exchanges the code with the PKCE verifier as a confidential client (client secret, or
``private_key_jwt`` with a JWK private key), verifies the ID token (``TokenVerifier``: keys,
``iss``, ``aud``/``azp``, ``nonce``, ``acr``, ``at_hash``), reads userinfo (JSON or a signed
JWT, same ``sub``) and returns a ``Principal``. Every failure is a ``LoginFailed`` with a
reason (an IdP that cannot be reached is ``IdpUnavailable``).

Authlib supplies the protocol pieces (authorization URL, token request body, client
authentication including the ``private_key_jwt`` assertion, PKCE challenge, ``at_hash``);
HTTP goes through ``auth/discovery.py`` so every call is bounded in time and size.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import httpx
import structlog
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri, prepare_token_request
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from authlib.oidc.core.util import create_half_hash
from joserfc import jws

from auth.client_auth import client_auth
from auth.discovery import (
    DEFAULT_DISCOVERY_PATH,
    get_response,
    parse_json_object,
)
from auth.errors import IdpUnavailable, LoginFailed, TokenRejected
from auth.principal import Principal, principal_from
from auth.tokens import IssuerConfig, TokenVerifier
from auth.userinfo import fetch_userinfo

log = structlog.get_logger(__name__)

MAX_ANSWER_BYTES = 64 * 1024
FORM = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}


@dataclass(frozen=True)
class OidcClientConfig:
    """This server as a PSC client. ``client_secret`` or ``private_key_jwt`` (a private JWK,
    RSA or EC P-256) authenticates it at the token endpoint; with a secret the method is
    ``client_secret_basic`` unless ``token_endpoint_auth_method`` says
    ``client_secret_post``."""

    issuer: str
    client_id: str
    client_secret: str | None = None
    private_key_jwk: Mapping[str, Any] | None = None
    scope: str = "openid scope_all"
    acr_values: str | None = "eidas1"
    discovery_path: str = DEFAULT_DISCOVERY_PATH
    token_endpoint_auth_method: str | None = None


@dataclass(frozen=True)
class LoginRequest:
    """Where to send the browser, and what to keep (server side) until it comes back."""

    url: str
    state: str
    nonce: str
    code_verifier: str


@dataclass(frozen=True)
class LoginResult:
    principal: Principal
    id_token: str
    access_token: str
    expires_at: datetime  # of the access token


class OidcClient:
    """The PSC client of one issuer. Discovery and keys are fetched lazily and cached."""

    def __init__(
        self,
        config: OidcClientConfig,
        *,
        http: httpx.AsyncClient | None = None,
        verifier: TokenVerifier | None = None,
    ) -> None:
        self.config = config
        self._auth = client_auth(
            config.client_id,
            secret=config.client_secret,
            private_key_jwk=config.private_key_jwk,
            method=config.token_endpoint_auth_method,
        )
        self.verifier = verifier or TokenVerifier(
            [
                IssuerConfig(
                    config.issuer,
                    allowed_clients=frozenset({config.client_id}),
                    required_acr=config.acr_values,
                    discovery_path=config.discovery_path,
                )
            ],
            http=http,
        )
        if config.issuer not in self.verifier.discoveries:
            raise ValueError(f"the verifier does not know the issuer {config.issuer}")
        self.http = self.verifier.http
        self.discovery = self.verifier.discoveries[config.issuer]

    async def aclose(self) -> None:
        await self.verifier.aclose()

    async def start_login(self, redirect_uri: str) -> LoginRequest:
        endpoint = await self.discovery.endpoint("authorization_endpoint")
        state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        verifier = secrets.token_urlsafe(64)  # 86 characters, within PKCE's 43..128
        url = prepare_grant_uri(
            endpoint,
            client_id=self.config.client_id,
            response_type="code",
            redirect_uri=redirect_uri,
            scope=self.config.scope,
            state=state,
            nonce=nonce,
            acr_values=self.config.acr_values,
            code_challenge=create_s256_code_challenge(verifier),
            code_challenge_method="S256",
        )
        return LoginRequest(url=str(url), state=state, nonce=nonce, code_verifier=verifier)

    async def finish_login(
        self, *, code: str, state: str, expected: LoginRequest, redirect_uri: str
    ) -> LoginResult:
        if not expected.state or not hmac.compare_digest(state.encode(), expected.state.encode()):
            raise LoginFailed("the login answer does not match the login started here (state)")
        if not code:
            raise LoginFailed("the login answer carries no authorization code")
        tokens = await self._exchange(code, expected.code_verifier, redirect_uri)
        id_token, access_token = tokens.get("id_token"), tokens.get("access_token")
        if not isinstance(id_token, str) or not isinstance(access_token, str):
            raise LoginFailed("Pro Santé Connect returned no ID token or no access token")
        if str(tokens.get("token_type", "")).lower() != "bearer":
            raise LoginFailed("Pro Santé Connect returned a token that is not a Bearer token")
        try:
            verified = await self.verifier.verify_id_token(
                id_token, client_id=self.config.client_id, nonce=expected.nonce
            )
        except TokenRejected as exc:
            raise LoginFailed(f"the ID token was refused: {exc.reason}") from exc
        if verified.issuer != self.config.issuer:  # a verifier shared with other issuers
            raise LoginFailed("the ID token comes from another issuer (iss)")
        claims = dict(verified.claims)
        at_hash = claims.get("at_hash")
        if at_hash is not None:
            alg = await self._id_token_alg(id_token)
            expected_hash = create_half_hash(access_token, alg)  # bytes (base64url)
            if not isinstance(at_hash, str) or not hmac.compare_digest(
                at_hash.encode(), bytes(expected_hash or b"")
            ):
                raise LoginFailed("the access token does not belong to the ID token (at_hash)")
        userinfo = await self._userinfo(access_token)
        if userinfo.get("sub") != claims.get("sub"):
            raise LoginFailed("userinfo describes another person than the ID token (sub)")
        claims["azp"] = self.config.client_id
        if isinstance(tokens.get("scope"), str):
            claims["scope"] = tokens["scope"]
        principal = principal_from(claims, userinfo, error=LoginFailed)
        expires_in = tokens.get("expires_in")
        if isinstance(expires_in, int) and not isinstance(expires_in, bool) and expires_in > 0:
            expires_at = datetime.fromtimestamp(int(time.time()) + expires_in, UTC)
        else:
            expires_at = verified.expires_at
        log.info("psc login", issuer=principal.issuer, user_id=principal.national_id)
        return LoginResult(principal, id_token, access_token, expires_at)

    async def end_session_url(
        self,
        id_token_hint: str | None,
        post_logout_redirect_uri: str | None = None,
        state: str | None = None,
    ) -> str:
        """Where to send the browser to end the PSC session too (RP-initiated logout)."""
        endpoint = await self.discovery.endpoint("end_session_endpoint")
        params = {
            "id_token_hint": id_token_hint,
            "post_logout_redirect_uri": post_logout_redirect_uri,
            "state": state,
            "client_id": self.config.client_id,
        }
        query = urlencode({k: v for k, v in params.items() if v})
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"

    async def _exchange(self, code: str, verifier: str, redirect_uri: str) -> dict[str, Any]:
        endpoint = await self.discovery.endpoint("token_endpoint")
        body = prepare_token_request(
            "authorization_code", code=code, redirect_uri=redirect_uri, code_verifier=verifier
        )
        url, headers, body = self._auth.prepare("POST", endpoint, dict(FORM), body)
        status, _, answer = await get_response(
            self.http, "POST", url, headers=headers, content=body, max_bytes=MAX_ANSWER_BYTES
        )
        if status != 200 and not 400 <= status < 500:
            raise IdpUnavailable(f"the token endpoint answered HTTP {status}")
        document = parse_json_object(answer, "token answer")
        if status != 200 or "error" in document:
            raise LoginFailed(
                f"Pro Santé Connect refused the authorization code: {_idp_error(document)}"
            )
        return document

    async def _userinfo(self, access_token: str) -> dict[str, Any]:
        return await fetch_userinfo(
            self.verifier,
            self.config.issuer,
            access_token,
            client_id=self.config.client_id,
            error=LoginFailed,
        )

    @staticmethod
    async def _id_token_alg(id_token: str) -> str:
        return str(jws.extract_compact(id_token.encode("ascii")).protected["alg"])


def _idp_error(document: Mapping[str, Any]) -> str:
    """``error: description`` of an OAuth error answer, short and printable."""
    error = str(document.get("error", "unknown_error"))[:64]
    description = document.get("error_description")
    text = f"{error}: {str(description)[:160]}" if description else error
    return "".join(c if c.isprintable() else "?" for c in text)
