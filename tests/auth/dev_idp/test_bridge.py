"""The Starlette -> Authlib request bridge, over real HTTP: form bodies, query strings,
and bodies it refuses."""

from __future__ import annotations

from tests.auth.dev_idp.conftest import SYSTEM, SYSTEM_SECRET, Idp, Pkce, auth_params


def test_form_parameters_reach_authlib(idp: Idp) -> None:
    response = idp.http.post(
        idp.endpoint("token"),
        data={"grant_type": "client_credentials", "scope": "system/Slot.read"},
        auth=(SYSTEM, SYSTEM_SECRET),
    )
    assert response.status_code == 200
    assert response.json()["scope"] == "system/Slot.read"


def test_a_json_body_is_not_a_form(idp: Idp) -> None:
    response = idp.http.post(
        idp.endpoint("token"),
        json={"grant_type": "client_credentials"},
        auth=(SYSTEM, SYSTEM_SECRET),
    )
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"


def test_non_utf8_and_oversized_bodies_are_refused(idp: Idp) -> None:
    form = {"content-type": "application/x-www-form-urlencoded"}
    for body in (b"grant_type=\xff\xfe", b"a=" + b"b" * 70_000):
        response = idp.http.post(idp.endpoint("token"), content=body, headers=form)
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_request"


def test_repeated_authorization_parameters_are_refused(idp: Idp) -> None:
    params = list(auth_params(Pkce()).items())
    assert idp.http.get(idp.endpoint("authorization"), params=params).status_code == 200
    for name in ("client_id", "redirect_uri", "state", "code_challenge"):
        repeated = [*params, (name, dict(params)[name])]
        response = idp.http.get(idp.endpoint("authorization"), params=repeated)
        assert response.status_code in {302, 400}, name
        assert "code=" not in response.headers.get("location", ""), name
        assert "<form" not in response.text, name
