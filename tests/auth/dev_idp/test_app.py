"""The dev IdP over real HTTP: discovery, JWKS, the login page and the code + PKCE flow, with
tokens verified by joserfc against the served JWKS."""

from __future__ import annotations

import logging
import time

import pytest

from auth.dev_idp import PROFESSIONALS, REALM_PATH
from tests.auth.dev_idp.conftest import (
    REDIRECT,
    WEB,
    Idp,
    Pkce,
    auth_params,
    exchange,
    log_in,
    login_form,
    tokens_for,
)


def test_discovery_at_the_psc_path_and_the_standard_one(idp: Idp) -> None:
    wallet = idp.http.get(f"{idp.base}{REALM_PATH}/.well-known/wallet-openid-configuration")
    standard = idp.http.get(f"{idp.base}{REALM_PATH}/.well-known/openid-configuration")
    assert wallet.status_code == standard.status_code == 200
    meta = wallet.json()
    assert meta == standard.json()
    issuer = f"{idp.base}{REALM_PATH}"
    assert meta["issuer"] == issuer
    protocol = f"{issuer}/protocol/openid-connect"
    assert meta["authorization_endpoint"] == f"{protocol}/auth"
    assert meta["token_endpoint"] == f"{protocol}/token"
    assert meta["userinfo_endpoint"] == f"{protocol}/userinfo"
    assert meta["jwks_uri"] == f"{protocol}/certs"
    assert meta["introspection_endpoint"] == f"{protocol}/token/introspect"
    assert meta["end_session_endpoint"] == f"{protocol}/logout"
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["acr_values_supported"] == ["eidas1"]
    assert "system/Slot.read" in meta["scopes_supported"]
    assert "private_key_jwt" in meta["token_endpoint_auth_methods_supported"]


def test_jwks_publishes_public_rs256_keys_with_kid(idp: Idp) -> None:
    response = idp.http.get(idp.meta["jwks_uri"])
    assert response.status_code == 200
    keys = response.json()["keys"]
    assert len(keys) == 1
    key = keys[0]
    assert (key["kty"], key["alg"], key["use"]) == ("RSA", "RS256", "sig")
    assert key["kid"]
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key)  # no private part


def test_login_page_lists_the_fixture_professionals_and_keeps_the_request(idp: Idp) -> None:
    pkce = Pkce()
    params = auth_params(pkce, state="the-state", nonce="the-nonce")
    page = idp.http.get(idp.endpoint("authorization"), params=params)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "<script" not in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    action, hidden, logins = login_form(page.text)
    assert action == idp.endpoint("authorization")
    assert hidden == params
    assert logins == [p.login for p in PROFESSIONALS] + [""]
    for professional in PROFESSIONALS:
        assert professional.national_id in page.text


def test_request_values_are_escaped_on_the_login_page(idp: Idp) -> None:
    params = auth_params(Pkce(), state='"><script>alert(1)</script>')
    page = idp.http.get(idp.endpoint("authorization"), params=params)
    assert page.status_code == 200
    assert "<script>" not in page.text
    assert login_form(page.text)[1]["state"] == params["state"]


def test_code_flow_with_pkce_gives_psc_shaped_tokens(idp: Idp) -> None:
    pkce = Pkce()
    redirect = log_in(idp, "regulateur-fictif", pkce, state="s-123", nonce="n-456")
    assert redirect["state"] == "s-123"
    response = exchange(idp, redirect["code"], pkce.verifier)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 120
    assert "refresh_token" not in body

    access = idp.verify(body["access_token"])
    claims = access.claims
    regulator = PROFESSIONALS[0]
    assert access.header["alg"] == "RS256"
    assert access.header["kid"] == idp.keys().keys[0].kid
    assert "aud" not in claims  # PSC's access tokens have no audience
    assert claims["azp"] == WEB
    assert claims["acr"] == "eidas1"
    assert claims["scope"] == "openid scope_all"
    assert claims["sub"] == regulator.subject
    assert regulator.number not in claims["sub"]  # a technical id, not the RPPS
    assert claims["exp"] - claims["iat"] == 120
    assert abs(claims["iat"] - time.time()) < 60

    id_token = idp.verify(body["id_token"]).claims
    assert id_token["aud"] == WEB
    assert (id_token["typ"], claims["typ"]) == ("ID", "Bearer")  # as Keycloak marks them
    assert id_token["azp"] == WEB
    assert id_token["nonce"] == "n-456"
    assert id_token["acr"] == "eidas1"
    assert id_token["sub"] == regulator.subject
    assert id_token["SubjectNameID"] == "8" + regulator.number
    assert id_token["at_hash"]


def test_adeli_professional_has_a_zero_prefixed_national_id(idp: Idp) -> None:
    body = tokens_for(idp, "infirmier-essai")
    info = idp.http.get(
        idp.endpoint("userinfo"), headers={"Authorization": f"Bearer {body['access_token']}"}
    ).json()
    assert info["SubjectNameID"] == "0759912348"
    assert info["SubjectRole"] == ["60^1.2.250.1.213.1.1.5.5"]
    assert {"identifiant": "759912348", "origine": "ADELI", "qualite": 1} in info["otherIds"]


def test_userinfo_with_the_bearer_token(idp: Idp) -> None:
    body = tokens_for(idp, "generaliste-modele")
    bearer = {"Authorization": f"Bearer {body['access_token']}"}
    response = idp.http.get(idp.endpoint("userinfo"), headers=bearer)
    assert response.status_code == 200, response.text
    info = response.json()
    doctor = PROFESSIONALS[2]
    assert info["sub"] == doctor.subject
    assert info["SubjectNameID"] == info["preferred_username"] == "8" + doctor.number
    assert (info["given_name"], info["family_name"]) == ("LOUISE", "MODÈLE")
    assert info["SubjectOrganization"] == doctor.organization
    assert info["SubjectRole"] == ["10^1.2.250.1.213.1.1.5.5"]
    exercice = info["SubjectRefPro"]["exercices"][0]
    assert exercice["codeProfession"] == "10"
    assert exercice["codeSavoirFaire"] == "SM54"
    assert exercice["activities"][0]["raisonSocialeSite"] == doctor.organization
    # POST works too, as on Keycloak
    assert idp.http.post(idp.endpoint("userinfo"), headers=bearer).json() == info


def test_userinfo_refuses_missing_and_forged_tokens(idp: Idp) -> None:
    missing = idp.http.get(idp.endpoint("userinfo"))
    assert missing.status_code == 401
    body = tokens_for(idp)
    head, payload, signature = body["access_token"].split(".")
    forged = f"{head}.{payload}.{signature[:-4]}AAAA"
    refused = idp.http.get(idp.endpoint("userinfo"), headers={"Authorization": f"Bearer {forged}"})
    assert refused.status_code == 401
    assert refused.json()["error"] == "invalid_token"
    assert "www-authenticate" in refused.headers


def test_cancel_on_the_login_page_is_access_denied(idp: Idp) -> None:
    page = idp.http.get(idp.endpoint("authorization"), params=auth_params(Pkce(), state="st"))
    action, hidden, _ = login_form(page.text)
    response = idp.http.post(action, data={**hidden, "login": ""})
    assert response.status_code == 302
    location = response.headers["location"]
    assert location.startswith(REDIRECT + "?")
    assert "error=access_denied" in location
    assert "state=st" in location


def test_unknown_professional_is_refused(idp: Idp) -> None:
    page = idp.http.get(idp.endpoint("authorization"), params=auth_params(Pkce()))
    action, hidden, _ = login_form(page.text)
    response = idp.http.post(action, data={**hidden, "login": "dr-nobody"})
    assert response.status_code == 400
    assert "location" not in response.headers


def test_oversized_form_is_refused(idp: Idp) -> None:
    response = idp.http.post(
        idp.endpoint("token"),
        content=b"grant_type=client_credentials&x=" + b"a" * 100_000,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_tokens_are_never_logged(idp: Idp, caplog: pytest.LogCaptureFixture) -> None:
    """Authlib logs each issued token at DEBUG; the dev IdP keeps its logger above that."""
    with caplog.at_level(logging.DEBUG):
        body = tokens_for(idp)
    assert caplog.records  # debug logging was on
    for secret in (body["access_token"], body["id_token"]):
        assert secret not in caplog.text
