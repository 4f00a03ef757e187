"""Grants over real HTTP: what the authorization code + PKCE grant and the client credentials
grant refuse, and private_key_jwt client authentication."""

from __future__ import annotations

import time
import uuid

import pytest
from joserfc import jwt

from tests.auth.dev_idp.conftest import (
    PUBLIC,
    REDIRECT,
    SIGNED,
    SIGNED_KEY,
    SYSTEM,
    SYSTEM_SECRET,
    WEB,
    WEB_SECRET,
    Idp,
    Pkce,
    auth_params,
    exchange,
    log_in,
    redirect_params,
)


def test_replayed_code_is_refused_and_its_tokens_revoked(idp: Idp) -> None:
    pkce = Pkce()
    code = log_in(idp, "regulateur-exemple", pkce)["code"]
    first = exchange(idp, code, pkce.verifier)
    assert first.status_code == 200
    access = first.json()["access_token"]
    introspect = {"token": access}
    assert idp.http.post(
        idp.endpoint("introspection"), data=introspect, auth=(SYSTEM, SYSTEM_SECRET)
    ).json()["active"]

    replay = exchange(idp, code, pkce.verifier)
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    # RFC 6749 §4.1.2: the tokens issued for a replayed code are revoked
    after = idp.http.post(
        idp.endpoint("introspection"), data=introspect, auth=(SYSTEM, SYSTEM_SECRET)
    )
    assert after.json() == {"active": False}


def test_pkce_verifier_mismatch_is_refused(idp: Idp) -> None:
    pkce = Pkce()
    code = log_in(idp, "regulateur-fictif", pkce)["code"]
    response = exchange(idp, code, Pkce().verifier)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_missing_verifier_is_refused(idp: Idp) -> None:
    pkce = Pkce()
    code = log_in(idp, "regulateur-fictif", pkce)["code"]
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
    response = idp.http.post(idp.endpoint("token"), data=data, auth=(WEB, WEB_SECRET))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


@pytest.mark.parametrize(
    ("overrides", "why"),
    [
        ({"code_challenge": None, "code_challenge_method": None}, "missing code_challenge"),
        ({"code_challenge_method": None}, "no method means plain"),
        ({"code_challenge_method": "plain"}, "plain refused"),
        ({"acr_values": "eidas2"}, "only eidas1 is offered"),
        ({"scope": "openid system/Slot.read"}, "scope not registered for the client"),
    ],
)
def test_refused_authorization_requests_go_back_to_the_client(
    idp: Idp, overrides: dict[str, str | None], why: str
) -> None:
    params = auth_params(Pkce(), state="kept", **overrides)
    response = idp.http.get(idp.endpoint("authorization"), params=params)
    query = redirect_params(response)  # the client is known and its redirect URI registered
    assert query["error"] in {"invalid_request", "invalid_scope"}, why
    assert query["state"] == "kept"
    assert "code" not in query


@pytest.mark.parametrize(
    "overrides",
    [
        {"redirect_uri": "http://127.0.0.1:9999/evil"},
        {"redirect_uri": REDIRECT + "/more"},
        {"client_id": "nobody"},
        {"client_id": None},
    ],
    ids=["unregistered redirect_uri", "redirect_uri prefix", "unknown client", "no client"],
)
def test_requests_that_cannot_be_sent_back_get_an_error_page(
    idp: Idp, overrides: dict[str, str | None]
) -> None:
    response = idp.http.get(idp.endpoint("authorization"), params=auth_params(Pkce(), **overrides))
    assert response.status_code == 400
    assert "location" not in response.headers
    assert response.headers["content-type"].startswith("text/html")


def test_the_login_post_is_validated_again(idp: Idp) -> None:
    """The hidden fields come back from the browser: a tampered redirect_uri is refused."""
    params = auth_params(Pkce(), redirect_uri="http://127.0.0.1:9999/evil")
    response = idp.http.post(
        idp.endpoint("authorization"), data={**params, "login": "regulateur-fictif"}
    )
    assert response.status_code == 400
    assert "location" not in response.headers


def test_code_is_bound_to_its_client(idp: Idp) -> None:
    pkce = Pkce()
    code = log_in(idp, "regulateur-fictif", pkce)["code"]
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
    response = idp.http.post(
        idp.endpoint("token"), data={**data, "client_id": PUBLIC, "code_verifier": pkce.verifier}
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    # and the client it was issued to can still redeem it
    assert exchange(idp, code, pkce.verifier).status_code == 200


def test_a_public_client_uses_pkce_alone(idp: Idp) -> None:
    pkce = Pkce()
    code = log_in(idp, "infirmier-essai", pkce, client_id=PUBLIC)["code"]
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
    response = idp.http.post(
        idp.endpoint("token"), data={**data, "client_id": PUBLIC, "code_verifier": pkce.verifier}
    )
    assert response.status_code == 200, response.text
    assert idp.verify(response.json()["access_token"]).claims["azp"] == PUBLIC


def test_a_confidential_client_cannot_skip_its_secret(idp: Idp) -> None:
    pkce = Pkce()
    code = log_in(idp, "regulateur-fictif", pkce)["code"]
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
    response = idp.http.post(
        idp.endpoint("token"), data={**data, "client_id": WEB, "code_verifier": pkce.verifier}
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_token_endpoint_refuses_a_wrong_secret(idp: Idp) -> None:
    pkce = Pkce()
    code = log_in(idp, "regulateur-fictif", pkce)["code"]
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
    response = idp.http.post(
        idp.endpoint("token"),
        data={**data, "code_verifier": pkce.verifier},
        auth=(WEB, "not-the-secret"),
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_client_credentials_with_the_secret_in_the_form(idp: Idp) -> None:
    data = {"grant_type": "client_credentials", "scope": "system/Slot.read"}
    response = idp.http.post(
        idp.endpoint("token"), data={**data, "client_id": SYSTEM, "client_secret": SYSTEM_SECRET}
    )
    assert response.status_code == 200, response.text
    wrong = idp.http.post(
        idp.endpoint("token"), data={**data, "client_id": SYSTEM, "client_secret": "nope"}
    )
    assert wrong.status_code in {400, 401}
    assert wrong.json()["error"] == "invalid_client"


def test_client_credentials_with_a_secret(idp: Idp) -> None:
    response = idp.http.post(
        idp.endpoint("token"),
        data={"grant_type": "client_credentials", "scope": "system/Slot.read"},
        auth=(SYSTEM, SYSTEM_SECRET),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert "id_token" not in body
    claims = idp.verify(body["access_token"]).claims
    assert claims["azp"] == SYSTEM
    assert claims["scope"] == "system/Slot.read"
    assert "aud" not in claims
    assert claims["sub"] == f"service-account-{SYSTEM}"


def test_client_credentials_default_to_every_registered_scope(idp: Idp) -> None:
    response = idp.http.post(
        idp.endpoint("token"),
        data={"grant_type": "client_credentials", "client_id": SYSTEM},
    )
    assert response.status_code == 401  # a confidential client without its secret
    response = idp.http.post(
        idp.endpoint("token"),
        data={"grant_type": "client_credentials"},
        auth=(SYSTEM, SYSTEM_SECRET),
    )
    scopes = set(response.json()["scope"].split())
    assert {"system/Slot.read", "system/Appointment.write"} <= scopes


@pytest.mark.parametrize(
    ("client", "secret", "scope", "status", "error"),
    [
        (SYSTEM, SYSTEM_SECRET, "user/Slot.write", 400, "invalid_scope"),
        (WEB, WEB_SECRET, "openid", 400, "unauthorized_client"),
        ("nobody", "x", "system/Slot.read", 401, "invalid_client"),
    ],
    ids=["scope not registered", "grant not registered", "unknown client"],
)
def test_client_credentials_refusals(
    idp: Idp, client: str, secret: str, scope: str, status: int, error: str
) -> None:
    response = idp.http.post(
        idp.endpoint("token"),
        data={"grant_type": "client_credentials", "scope": scope},
        auth=(client, secret),
    )
    assert response.status_code == status, response.text
    assert response.json()["error"] == error


def _assertion(idp: Idp, jti: str, audience: str | None = None) -> str:
    now = int(time.time())
    claims = {
        "iss": SIGNED,
        "sub": SIGNED,
        "aud": audience or idp.endpoint("token"),
        "iat": now,
        "exp": now + 60,
        "jti": jti,
    }
    return jwt.encode({"alg": "RS256", "kid": SIGNED_KEY.kid or ""}, claims, SIGNED_KEY)


def _signed_request(idp: Idp, assertion: str) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion,
    }


def test_client_credentials_with_private_key_jwt(idp: Idp) -> None:
    assertion = _assertion(idp, str(uuid.uuid4()))
    response = idp.http.post(idp.endpoint("token"), data=_signed_request(idp, assertion))
    assert response.status_code == 200, response.text
    claims = idp.verify(response.json()["access_token"]).claims
    assert claims["azp"] == SIGNED
    assert claims["scope"] == "system/Slot.read"

    replayed = idp.http.post(idp.endpoint("token"), data=_signed_request(idp, assertion))
    assert replayed.status_code == 400
    assert replayed.json()["error"] == "invalid_client"


def test_private_key_jwt_refuses_another_audience_or_key(idp: Idp) -> None:
    elsewhere = _assertion(idp, str(uuid.uuid4()), audience="https://elsewhere.example/token")
    response = idp.http.post(idp.endpoint("token"), data=_signed_request(idp, elsewhere))
    assert response.json()["error"] == "invalid_client"

    from joserfc.jwk import RSAKey

    other = RSAKey.generate_key(2048, parameters={"alg": "RS256"})
    now = int(time.time())
    claims = {"iss": SIGNED, "sub": SIGNED, "aud": idp.endpoint("token"), "exp": now + 60}
    forged = jwt.encode({"alg": "RS256"}, {**claims, "jti": str(uuid.uuid4())}, other)
    response = idp.http.post(idp.endpoint("token"), data=_signed_request(idp, forged))
    assert response.json()["error"] == "invalid_client"
