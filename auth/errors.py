"""Why a token or a login was refused, in words safe to show and log.

Every refusal in ``auth`` is an ``AuthError``: ``reason`` is a sentence for people (it never
contains the token, a code or a secret) and ``error`` is the OAuth error code the API puts in
``WWW-Authenticate`` (RFC 6750 §3.1). The HTTP layer maps them; ``auth`` knows nothing of it.
"""

from __future__ import annotations

from typing import Literal

OAuthErrorCode = Literal["invalid_token", "insufficient_scope", "invalid_request"]


class AuthError(Exception):
    """A refused credential. ``str(exc)`` is the reason."""

    def __init__(self, reason: str, error: OAuthErrorCode = "invalid_token") -> None:
        super().__init__(reason)
        self.reason = reason
        self.error: OAuthErrorCode = error


class TokenRejected(AuthError):
    """A bearer, ID or introspected token failed a check; the reason names the check."""


class LoginFailed(AuthError):
    """A login could not complete: state mismatch, IdP error (replayed code, wrong PKCE
    verifier...), bad ID token, unusable userinfo, or the IdP unreachable."""

    def __init__(self, reason: str, error: OAuthErrorCode = "invalid_request") -> None:
        super().__init__(reason, error)


class IdpUnavailable(AuthError):
    """The identity provider could not be reached or answered nonsense (discovery, JWKS,
    token or userinfo endpoint): not the caller's fault, so the API may answer 503."""
