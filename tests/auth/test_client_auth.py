"""Choosing the client authentication at start-up (the requests themselves are exercised
against the stub PSC in test_oidc.py and test_introspection.py)."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from auth.client_auth import client_auth


def test_secret_methods() -> None:
    basic = client_auth("app", secret="s")
    _, headers, body = basic.prepare("POST", "https://psc.example/token", {}, "a=1")
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"app:s").decode()
    assert body == "a=1"
    post = client_auth("app", secret="s", method="client_secret_post")
    _, headers, body = post.prepare("POST", "https://psc.example/token", {}, "a=1")
    assert "Authorization" not in headers and "client_secret=s" in body


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_private_key_jwt_assertion(kind: str) -> None:
    key = (
        RSAKey.generate_key(2048, parameters={"kid": "k1"})
        if kind == "rsa"
        else ECKey.generate_key("P-256", parameters={"kid": "k1"})
    )
    auth = client_auth("app", private_key_jwk=key.as_dict(private=True))
    _, _, body = auth.prepare("POST", "https://psc.example/token", {}, "grant_type=x")
    fields = dict(pair.split("=", 1) for pair in body.split("&"))
    assert fields["client_assertion_type"].endswith("jwt-bearer")
    alg = "RS256" if kind == "rsa" else "ES256"
    token = jwt.decode(fields["client_assertion"], key, algorithms=[alg])
    assert token.header["kid"] == "k1" and token.header["alg"] == alg
    claims = token.claims
    assert claims["iss"] == claims["sub"] == "app"
    assert claims["aud"] == "https://psc.example/token" and claims["jti"] and claims["exp"]


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"secret": ""},
        {"method": "private_key_jwt", "secret": "s"},
        {"method": "tls_client_auth", "secret": "s"},
        {"private_key_jwk": RSAKey.generate_key(2048).as_dict(private=False)},
        {
            "private_key_jwk": ECKey.import_key(ec.generate_private_key(ec.SECP384R1())).as_dict(
                private=True
            )
        },
        {"private_key_jwk": {"kty": "RSA"}},
    ],
)
def test_unusable_credentials(kw: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        client_auth("app", **kw)
