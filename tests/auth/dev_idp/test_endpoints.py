"""Introspection (RFC 7662) and end session (RP-initiated logout) over real HTTP."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from auth.dev_idp import PROFESSIONALS
from auth.dev_idp.server import DevAuthorizationServer
from tests.auth.dev_idp.conftest import (
    LOGOUT_TARGET,
    SYSTEM,
    SYSTEM_SECRET,
    WEB,
    WEB_SECRET,
    Idp,
    tokens_for,
)


def _introspect(
    idp: Idp, token: str, auth: tuple[str, str] | None = (SYSTEM, SYSTEM_SECRET)
) -> httpx.Response:
    return idp.http.post(idp.endpoint("introspection"), data={"token": token}, auth=auth)


def _signed_by_the_idp(idp: Idp, **claims: object) -> str:
    """A token signed with the running IdP's own current key (to reach states, such as
    expiry, that the flow cannot produce on demand)."""
    server: DevAuthorizationServer = idp.app.state.server
    key = server.tokens.keys.current
    now = int(time.time())
    base = {"iss": idp.issuer, "iat": now - 300, "exp": now - 180, "typ": "Bearer"}
    base.update({"azp": WEB, "sub": "x", "jti": "j", "scope": "openid"})
    return jwt.encode({"alg": "RS256", "kid": key.kid or ""}, {**base, **claims}, key)


def _unsigned(idp: Idp) -> str:
    """An ``alg: none`` token claiming everything an active token has."""
    now = int(time.time())
    claims = {"iss": idp.issuer, "iat": now, "exp": now + 60, "typ": "Bearer", "azp": WEB}
    claims.update({"sub": "x", "jti": "j", "scope": "openid", "acr": "eidas1"})

    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def test_introspection_of_an_active_token(idp: Idp) -> None:
    body = tokens_for(idp, "regulateur-fictif")
    response = _introspect(idp, body["access_token"])
    assert response.status_code == 200, response.text
    info = response.json()
    assert info["active"] is True
    assert info["client_id"] == WEB
    assert info["azp"] == WEB
    assert info["acr"] == "eidas1"
    assert info["scope"] == "openid scope_all"
    assert info["iss"] == idp.issuer
    assert info["username"] == "819999000011"
    # the client the token was issued to may introspect it too, with its own secret
    assert _introspect(idp, body["access_token"], (WEB, WEB_SECRET)).json()["active"] is True


@pytest.mark.parametrize(
    "make",
    [
        lambda idp: _signed_by_the_idp(idp),
        lambda idp: _signed_by_the_idp(idp, iss="http://127.0.0.1:1/elsewhere", exp=2**31),
        lambda idp: tokens_for(idp)["id_token"],
        lambda idp: jwt.encode(
            {"alg": "RS256"},
            {"iss": idp.issuer, "exp": 2**31, "iat": 0, "typ": "Bearer"},
            RSAKey.generate_key(2048),
        ),
        lambda idp: _unsigned(idp),
        lambda idp: "not-a-token",
        lambda idp: "x" * 20_000,
    ],
    ids=[
        "expired",
        "other issuer",
        "an ID token",
        "foreign key",
        "alg none",
        "garbage",
        "oversized",
    ],
)
def test_introspection_of_inactive_tokens(idp: Idp, make: Callable[[Idp], str]) -> None:
    response = _introspect(idp, make(idp))
    assert response.status_code == 200, response.text
    assert response.json() == {"active": False}


@pytest.mark.parametrize(
    "auth",
    [("nobody", "secret"), (SYSTEM, "wrong-secret"), None],
    ids=["unknown client", "wrong secret", "no client authentication"],
)
def test_introspection_needs_a_registered_client(idp: Idp, auth: tuple[str, str] | None) -> None:
    response = _introspect(idp, tokens_for(idp)["access_token"], auth)
    assert response.status_code in {400, 401}
    assert response.json()["error"] == "invalid_client"
    assert "active" not in response.json()


def test_logout_with_id_token_hint_redirects_to_the_registered_uri(idp: Idp) -> None:
    body = tokens_for(idp)
    response = idp.http.get(
        idp.endpoint("end_session"),
        params={
            "id_token_hint": body["id_token"],
            "post_logout_redirect_uri": LOGOUT_TARGET,
            "state": "bye",
        },
    )
    assert response.status_code == 302
    location = response.headers["location"]
    assert location.startswith(LOGOUT_TARGET)
    assert parse_qs(urlsplit(location).query) == {"state": ["bye"]}


def test_logout_with_client_id_redirects_to_the_registered_uri(idp: Idp) -> None:
    response = idp.http.get(
        idp.endpoint("end_session"),
        params={"client_id": WEB, "post_logout_redirect_uri": LOGOUT_TARGET},
    )
    assert response.status_code == 302
    assert response.headers["location"] == LOGOUT_TARGET


def test_logout_never_redirects_to_an_unregistered_uri(idp: Idp) -> None:
    body = tokens_for(idp)
    for params in (
        {"id_token_hint": body["id_token"], "post_logout_redirect_uri": "http://evil.example/"},
        {"client_id": WEB, "post_logout_redirect_uri": "http://127.0.0.1:8080/elsewhere"},
        {"post_logout_redirect_uri": LOGOUT_TARGET},  # nobody says which client
    ):
        response = idp.http.get(idp.endpoint("end_session"), params=params)
        assert response.status_code == 200, params
        assert "location" not in response.headers


def test_logout_refuses_a_forged_id_token_hint(idp: Idp) -> None:
    forged = jwt.encode(
        {"alg": "RS256"}, {"iss": idp.issuer, "aud": WEB}, RSAKey.generate_key(2048)
    )
    response = idp.http.get(
        idp.endpoint("end_session"),
        params={"id_token_hint": forged, "post_logout_redirect_uri": LOGOUT_TARGET},
    )
    assert response.status_code == 400
    assert "location" not in response.headers


def test_userinfo_refuses_expired_and_system_tokens(idp: Idp) -> None:
    expired = _signed_by_the_idp(idp, sub=PROFESSIONALS[0].subject)
    response = idp.http.get(
        idp.endpoint("userinfo"), headers={"Authorization": f"Bearer {expired}"}
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"

    system = idp.http.post(
        idp.endpoint("token"),
        data={"grant_type": "client_credentials"},
        auth=(SYSTEM, SYSTEM_SECRET),
    ).json()["access_token"]
    response = idp.http.get(idp.endpoint("userinfo"), headers={"Authorization": f"Bearer {system}"})
    assert response.status_code in {401, 403}
    assert response.json()["error"] in {"invalid_token", "insufficient_scope"}
    assert "SubjectNameID" not in response.text
