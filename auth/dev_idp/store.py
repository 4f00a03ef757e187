"""The dev IdP's memory: authorization codes, issued tokens' revocations, used nonces.

Everything lives in one process and is lost on restart, which is what a development IdP
wants. Codes are single use by construction: :meth:`Memory.take_code` removes the code as it
returns it, under a lock, so two concurrent token requests cannot both redeem it; a code
presented again is remembered as spent and the tokens issued from it are revoked (RFC 6749
§4.1.2: "SHOULD revoke ... all tokens previously issued based on that authorization code").
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from authlib.oauth2.rfc6749 import TokenMixin
from authlib.oidc.core import AuthorizationCodeMixin

from auth.dev_idp.clients import Client
from auth.dev_idp.fixtures import Professional, professional_by_subject

_SPENT_MEMORY = 600.0  # how long a redeemed code is remembered, to detect its replay


@dataclass(frozen=True)
class AuthorizationCode(AuthorizationCodeMixin):
    code: str
    client_id: str
    redirect_uri: str | None
    scope: str
    subject: str
    nonce: str | None
    code_challenge: str
    code_challenge_method: str
    auth_time: int
    acr: str
    expires_at: float

    def get_redirect_uri(self) -> str | None:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> str:
        return self.acr

    def get_amr(self) -> list[str] | None:
        return None


class IssuedToken(TokenMixin):
    """A verified access token (a JWT this IdP signed), as Authlib's endpoints see it."""

    def __init__(self, claims: dict[str, Any], client: Client | None, revoked: bool) -> None:
        self.claims = claims
        self._client = client
        self._revoked = revoked

    def check_client(self, client: Client) -> bool:
        return bool(self.claims.get("azp") == client.client_id)

    def get_scope(self) -> str:
        return str(self.claims.get("scope", ""))

    def get_expires_in(self) -> int:
        return int(self.claims["exp"]) - int(self.claims["iat"])

    def is_expired(self) -> bool:
        return bool(int(self.claims["exp"]) <= time.time())

    def is_revoked(self) -> bool:
        return self._revoked

    def get_user(self) -> Professional | None:
        return professional_by_subject(str(self.claims.get("sub", "")))

    def get_client(self) -> Client | None:
        return self._client


class Memory:
    """Codes, spent codes, revoked token ids, used nonces and client-assertion ids."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._codes: dict[str, AuthorizationCode] = {}
        self._spent: dict[str, tuple[float, list[str]]] = {}  # code -> (when, token ids)
        self._revoked: set[str] = set()
        self._nonces: dict[tuple[str, str], float] = {}
        self._assertions: dict[tuple[str, str], float] = {}

    def save_code(self, code: AuthorizationCode) -> None:
        with self._lock:
            self._forget_old()
            self._codes[code.code] = code
            if code.nonce:
                self._nonces[(code.client_id, code.nonce)] = code.expires_at + _SPENT_MEMORY

    def take_code(self, code: str, client_id: str) -> AuthorizationCode | None:
        """The code if it was issued to ``client_id`` and is unexpired, removed as it is
        returned. A replayed code returns None and revokes what it was exchanged for."""
        now = self._clock()
        with self._lock:
            spent = self._spent.get(code)
            if spent is not None:
                self._revoked.update(spent[1])
                return None
            found = self._codes.get(code)
            if found is None or found.client_id != client_id:
                return None
            del self._codes[code]
            self._spent[code] = (now, [])
            return found if found.expires_at > now else None

    def link_token(self, code: str, token_id: str) -> None:
        """Remember that ``token_id`` was issued for ``code`` (revoked if the code is replayed)."""
        with self._lock:
            spent = self._spent.get(code)
            if spent is not None:
                spent[1].append(token_id)

    def is_revoked(self, token_id: str) -> bool:
        with self._lock:
            return token_id in self._revoked

    def nonce_used(self, client_id: str, nonce: str) -> bool:
        with self._lock:
            return (client_id, nonce) in self._nonces

    def first_assertion(self, client_id: str, jti: str, expires_at: float) -> bool:
        """True the first time a client assertion id is seen (private_key_jwt replay)."""
        with self._lock:
            self._forget_old()
            key = (client_id, jti)
            if key in self._assertions:
                return False
            self._assertions[key] = expires_at
            return True

    def _forget_old(self) -> None:
        now = self._clock()
        self._codes = {k: c for k, c in self._codes.items() if c.expires_at > now}
        self._spent = {k: s for k, s in self._spent.items() if now - s[0] < _SPENT_MEMORY}
        self._nonces = {k: t for k, t in self._nonces.items() if t > now}
        self._assertions = {k: t for k, t in self._assertions.items() if t > now}
