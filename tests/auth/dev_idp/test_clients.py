"""What a registered client may ask for: exact redirect URIs, registered scopes only."""

from __future__ import annotations

from auth.dev_idp.clients import Client
from auth.dev_idp.config import ClientConfig

WEB = Client(
    ClientConfig(
        client_id="web",
        client_secret="s",
        redirect_uris=("http://127.0.0.1:8080/cb", "http://localhost:8080/cb"),
        scopes=("openid", "scope_all"),
    )
)


def test_redirect_uris_match_exactly() -> None:
    assert WEB.check_redirect_uri("http://127.0.0.1:8080/cb")
    for uri in (
        "http://127.0.0.1:8080/cb/",
        "http://127.0.0.1:8080/cb?x=1",
        "HTTP://127.0.0.1:8080/cb",
    ):
        assert not WEB.check_redirect_uri(uri)
    assert WEB.get_default_redirect_uri() is None  # two registered: the request must name one


def test_scopes() -> None:
    assert WEB.get_allowed_scope(None) == "openid scope_all"
    assert WEB.get_allowed_scope("openid openid") == "openid"
    assert WEB.get_allowed_scope("openid system/Slot.read") is None  # invalid_scope


def test_secret_and_methods() -> None:
    assert WEB.check_client_secret("s")
    assert not WEB.check_client_secret("S")
    assert WEB.check_endpoint_auth_method("client_secret_basic", "token")
    assert WEB.check_endpoint_auth_method("client_secret_post", "token")  # as on Keycloak
    assert not WEB.check_endpoint_auth_method("private_key_jwt", "token")
    assert not WEB.check_endpoint_auth_method("none", "token")
    assert WEB.check_response_type("code")
    assert not WEB.check_response_type("token")
    assert not WEB.check_grant_type("client_credentials")
