"""How this server proves who it is to PSC's token and introspection endpoints.

A confidential client authenticates with its secret (``client_secret_basic`` or
``client_secret_post``) or with a JWT assertion signed by its private key
(``private_key_jwt``, RFC 7523: RSA → RS256, EC P-256 → ES256). Authlib builds the requests;
this module only picks and checks the method once, at start-up, so a bad key fails early.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from authlib.oauth2.auth import ClientAuth
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, RSAKey, import_key

METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt")


def client_auth(
    client_id: str,
    *,
    secret: str | None = None,
    private_key_jwk: Mapping[str, Any] | None = None,
    method: str | None = None,
) -> ClientAuth:
    """Authlib's ``ClientAuth``: ``prepare(method, url, headers, body)`` adds the client's
    credentials to a form POST. Raises ``ValueError`` for a missing or unusable credential."""
    if method is not None and method not in METHODS:
        raise ValueError(f"unsupported client authentication {method!r}")
    if private_key_jwk is not None and method in (None, "private_key_jwt"):
        try:
            key = import_key(dict(private_key_jwk))
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            raise ValueError("the client's private key is not a usable JWK") from exc
        if not isinstance(key, RSAKey | ECKey) or not key.is_private:
            raise ValueError("private_key_jwt needs a private RSA or EC P-256 key")
        if isinstance(key, ECKey) and key.get("crv") != "P-256":
            raise ValueError("private_key_jwt needs an EC key on the P-256 curve")
        alg = "ES256" if isinstance(key, ECKey) else "RS256"
        headers = {"kid": key.kid} if key.get("kid") else None
        return ClientAuth(client_id, key, PrivateKeyJWT(alg=alg, headers=headers))
    if method == "private_key_jwt":
        raise ValueError("private_key_jwt needs a private key (JWK)")
    if not secret:
        raise ValueError("a confidential client needs a client secret or a private key")
    return ClientAuth(client_id, secret, method or "client_secret_basic")
