"""A dev IdP served by uvicorn on a free loopback port, and helpers that drive it over HTTP.

The server runs in a thread of the test process (its keys can then be rotated through the
app as well as over HTTP); every request goes through a real socket with httpx.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import uvicorn
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from starlette.applications import Starlette

from auth.dev_idp import REALM_PATH, ClientConfig, DevIdpConfig, create_app
from auth.dev_idp.config import DEFAULT_CLIENTS

WEB = "sas-fhir-server"
WEB_SECRET = "dev-secret-sas-fhir-server"
REDIRECT = "http://127.0.0.1:8080/auth/callback"  # registered for WEB by default
SYSTEM = "sas-platform"
SYSTEM_SECRET = "dev-secret-sas-platform"
SIGNED = "signed-system"  # authenticates with private_key_jwt
PUBLIC = "public-web"  # a public client (no secret): PKCE is all it has
LOGOUT_TARGET = "http://127.0.0.1:8080/auth/logged-out"

SIGNED_KEY = RSAKey.generate_key(2048, parameters={"alg": "RS256"}, auto_kid=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Idp:
    """A running dev IdP: its base URL, discovery document and app."""

    base: str
    app: Starlette
    http: httpx.Client
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def issuer(self) -> str:
        return str(self.meta["issuer"])

    def endpoint(self, name: str) -> str:
        return str(self.meta[f"{name}_endpoint"])

    def keys(self) -> KeySet:
        return KeySet.import_key_set(self.http.get(self.meta["jwks_uri"]).json())

    def verify(self, token: str) -> jwt.Token:
        """The token checked against the served JWKS (signature, iss, exp)."""
        decoded = jwt.decode(token, self.keys(), algorithms=["RS256"])
        jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": self.issuer}, exp={"essential": True}
        ).validate(decoded.claims)
        return decoded


@dataclass
class Pkce:
    verifier: str = field(default_factory=lambda: secrets.token_urlsafe(48))

    @property
    def challenge(self) -> str:
        digest = hashlib.sha256(self.verifier.encode("ascii")).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def auth_params(pkce: Pkce, **overrides: str | None) -> dict[str, str]:
    params: dict[str, str | None] = {
        "response_type": "code",
        "client_id": WEB,
        "redirect_uri": REDIRECT,
        "scope": "openid scope_all",
        "state": secrets.token_urlsafe(16),
        "nonce": secrets.token_urlsafe(16),
        "code_challenge": pkce.challenge,
        "code_challenge_method": "S256",
        "acr_values": "eidas1",
    }
    params.update(overrides)
    return {k: v for k, v in params.items() if v is not None}


def login_form(page: str) -> tuple[str, dict[str, str], list[str]]:
    """The login page's form: its action, hidden fields and the logins it offers."""
    action = re.search(r'<form method="post" action="([^"]+)"', page)
    assert action, page
    hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page))
    logins = re.findall(r'<button type="submit" name="login" value="([^"]*)"', page)
    return unescape(action.group(1)), {k: unescape(v) for k, v in hidden.items()}, logins


def redirect_params(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(REDIRECT + "?"), location
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def log_in(idp: Idp, login: str, pkce: Pkce, **overrides: str | None) -> dict[str, str]:
    """GET the authorization endpoint, pick ``login`` on the page: the redirect's query."""
    page = idp.http.get(idp.endpoint("authorization"), params=auth_params(pkce, **overrides))
    assert page.status_code == 200, page.text
    action, hidden, _ = login_form(page.text)
    return redirect_params(idp.http.post(action, data={**hidden, "login": login}))


def exchange(idp: Idp, code: str, verifier: str, **extra: str) -> httpx.Response:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
    data.update({"code_verifier": verifier, **extra})
    return idp.http.post(idp.endpoint("token"), data=data, auth=(WEB, WEB_SECRET))


def tokens_for(idp: Idp, login: str = "regulateur-fictif") -> dict[str, Any]:
    pkce = Pkce()
    code = log_in(idp, login, pkce)["code"]
    response = exchange(idp, code, pkce.verifier)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def clients_for_tests() -> tuple[ClientConfig, ...]:
    signed = ClientConfig(
        client_id=SIGNED,
        token_endpoint_auth_method="private_key_jwt",
        jwks={"keys": [SIGNED_KEY.as_dict(private=False)]},
        grant_types=("client_credentials",),
        scopes=("system/Slot.read",),
    )
    public = ClientConfig(
        client_id=PUBLIC, token_endpoint_auth_method="none", redirect_uris=(REDIRECT,)
    )
    return (*DEFAULT_CLIENTS, signed, public)


@contextmanager
def serving(config: DevIdpConfig) -> Iterator[Idp]:
    """``create_app(config)`` under uvicorn on a free loopback port, until the block ends."""
    app = create_app(config)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, name=f"dev-idp-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive(), "the dev IdP did not start"
        assert time.monotonic() < deadline, "the dev IdP did not start in 15 s"
        time.sleep(0.01)
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(timeout=10) as http:
            idp = Idp(base, app, http)
            idp.meta = http.get(f"{base}{REALM_PATH}/.well-known/openid-configuration").json()
            yield idp
    finally:
        server.should_exit = True
        thread.join(15)


@pytest.fixture(scope="module")
def idp() -> Iterator[Idp]:
    """One dev IdP per test module: default settings plus a private_key_jwt client."""
    with serving(DevIdpConfig(clients=clients_for_tests())) as running:
        yield running


@pytest.fixture
def fresh_idp() -> Iterator[Idp]:
    """A dev IdP of its own, for tests that change its state (key rotation)."""
    with serving(DevIdpConfig(clients=clients_for_tests(), key_grace=600)) as running:
        yield running
