"""Signing and reading the dev IdP's tokens, shaped like Pro Santé Connect's.

PSC access tokens are RS256 JWTs that live about two minutes, carry **no ``aud``** (the
client is in ``azp``), a technical ``sub`` (not the RPPS), ``acr=eidas1`` and ``scope``.
Authlib's RFC 9068 generator always adds ``aud`` and ``client_id``, so the claims are built
here and signed with joserfc; Authlib's ``BearerTokenGenerator`` wraps them into the token
response.
"""

from __future__ import annotations

import json
import time
import uuid
from contextvars import ContextVar
from typing import Any

from joserfc import jws, jwt
from joserfc.errors import JoseError

from auth.dev_idp.clients import Client
from auth.dev_idp.config import REALM_PATH, DevIdpConfig
from auth.dev_idp.fixtures import Professional
from auth.dev_idp.keys import ALGORITHM, KeyRing
from auth.dev_idp.store import IssuedToken, Memory

ACR = "eidas1"
MAX_TOKEN_CHARS = 16 * 1024  # far above any token this IdP signs; refuse larger ones unread

# The issuer of the request being served, when the configuration does not fix one: the
# handlers set it from the address the request came to before calling into Authlib, whose
# token generators are not given the request.
_served_issuer: ContextVar[str | None] = ContextVar("dev_idp_issuer", default=None)


def serve_issuer(base_url: str) -> None:
    """Record the issuer for the current request, from its base URL (``http://host:port/``)."""
    _served_issuer.set(base_url.rstrip("/") + REALM_PATH)


class TokenIssuer:
    """Signs access and ID tokens with the key ring's current key; reads them back."""

    def __init__(self, config: DevIdpConfig, keys: KeyRing, memory: Memory) -> None:
        self.config = config
        self.keys = keys
        self.memory = memory
        self.clients = {c.client_id: Client(c) for c in config.clients}

    @property
    def issuer(self) -> str:
        if self.config.issuer is not None:
            return self.config.issuer.rstrip("/")
        served = _served_issuer.get()
        if served is None:
            raise RuntimeError("no issuer configured and none recorded for this request")
        return served

    def access_token(
        self, client: Client, grant_type: str, user: Professional | None, scope: str
    ) -> str:
        """A PSC-shaped access token (the signature of Authlib's token generators)."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "iat": now,
            "exp": now + self.config.access_token_ttl,
            "jti": str(uuid.uuid4()),
            "typ": "Bearer",
            "azp": client.client_id,
            "scope": scope,
        }
        if user is not None:
            claims["sub"] = user.subject
            claims["acr"] = ACR
            claims["preferred_username"] = user.national_id
        else:
            # a system token: no person behind it, so no acr; Keycloak names the sub this way
            claims["sub"] = f"service-account-{client.client_id}"
        key = self.keys.current
        header = {"alg": ALGORITHM, "typ": "JWT", "kid": key.kid or ""}
        return jwt.encode(header, claims, key, algorithms=[ALGORITHM])

    def read_access_token(self, token: str) -> IssuedToken | None:
        """The token if this IdP signed it with a still-published key and it is an access
        token, else None. Expiry and revocation are for the caller to check."""
        if not token or len(token) > MAX_TOKEN_CHARS:
            return None
        try:
            decoded = jwt.decode(token, self.keys.verification_keys(), algorithms=[ALGORITHM])
        except (JoseError, ValueError):
            return None
        claims = dict(decoded.claims)
        if claims.get("typ") != "Bearer" or claims.get("iss") != self.issuer:
            return None
        if not isinstance(claims.get("exp"), int) or not isinstance(claims.get("iat"), int):
            return None
        client = self.clients.get(str(claims.get("azp")))
        revoked = self.memory.is_revoked(str(claims.get("jti")))
        return IssuedToken(claims, client, revoked)


def token_id(token: str) -> str | None:
    """The ``jti`` of a token this IdP has just signed (read without verifying: it is ours)."""
    try:
        claims = json.loads(jws.extract_compact(token.encode("ascii")).payload)
    except (JoseError, ValueError):
        return None
    jti = claims.get("jti") if isinstance(claims, dict) else None
    return str(jti) if jti else None
