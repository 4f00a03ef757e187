"""Signing in to the server's pages with Pro Santé Connect, against the dev IdP over HTTP.

The FHIR app runs in process (https://testserver, so Secure cookies travel); the dev IdP is
a real uvicorn server on loopback, and the app talks to it over real sockets: discovery,
token exchange, ID token keys, userinfo, end-session.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI

from auth.dev_idp import ClientConfig, DevIdpConfig
from auth.dev_idp.config import DEFAULT_CLIENTS
from fhir_server.api.sessions import Cookies, PendingLogin
from fhir_server.app import create_app
from fhir_server.interactions import update
from fhir_server.settings import Settings
from fhir_server.storage.port import Store
from tests.auth.dev_idp.conftest import Idp, login_form, serving

BASE = "https://testserver"
CLIENT, SECRET = "sas-fhir-server-tests", "tests-secret"
SESSION_SECRET = "a-test-session-key-of-some-length"
REGULATOR_ID = "819999000011"  # the dev IdP's "regulateur-fictif"
REGUL = "https://interop.esante.gouv.fr/ig/fhir/sas/StructureDefinition/FrPractitionerRegul"


@pytest.fixture(scope="module")
def idp() -> Iterator[Idp]:
    web = ClientConfig(
        client_id=CLIENT,
        client_secret=SECRET,
        redirect_uris=(f"{BASE}/auth/callback",),
        post_logout_redirect_uris=(f"{BASE}/auth/logged-out",),
        grant_types=("authorization_code",),
        scopes=("openid", "scope_all"),
    )
    with serving(DevIdpConfig(clients=(*DEFAULT_CLIENTS, web))) as running:
        yield running


def login_settings(idp: Idp, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "auth": "on",
        "validate_profiles": False,
        "audit": False,
        "psc_issuer": idp.issuer,
        "psc_client_id": CLIENT,
        "psc_client_secret": SECRET,
        "session_secret": SESSION_SECRET,
    }
    return Settings(**(values | extra))


@pytest.fixture
async def app(store: Store, idp: Idp) -> AsyncIterator[FastAPI]:
    application = create_app(login_settings(idp), store=store)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def browser(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5000))
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        yield client


async def regulator_account(app: FastAPI, national_id: str, *, active: bool = True) -> None:
    """The account the SAS platform keeps on the server (INT_R02), written as the server."""
    body = {
        "resourceType": "Practitioner",
        "id": f"regul-{national_id}",
        "meta": {"profile": [REGUL]},
        "identifier": [{"system": "urn:oid:1.2.250.1.71.4.2.1", "value": national_id}],
        "active": active,
        "name": [{"family": "Fictif", "given": ["Camille"]}],
    }
    await update.update(app.state.wiring.ctx, "Practitioner", f"regul-{national_id}", body)


def pick_at_idp(idp: Idp, authorize_url: str, login: str) -> str:
    """The professional chooses themselves on the dev IdP's page: the redirect back."""
    page = idp.http.get(authorize_url)
    assert page.status_code == 200, page.text
    action, hidden, logins = login_form(page.text)
    assert login in logins
    answer = idp.http.post(action, data={**hidden, "login": login})
    assert answer.status_code == 302, answer.text
    back = answer.headers["location"]
    assert back.startswith(f"{BASE}/auth/callback?"), back
    return back


async def sign_in(
    browser: httpx.AsyncClient, idp: Idp, login: str = "regulateur-fictif", next_path: str = ""
) -> httpx.Response:
    """The whole round: our login page, the IdP's, our callback. The callback's answer."""
    params = {"next": next_path} if next_path else {}
    started = await browser.get("/auth/login", params=params)
    assert started.status_code == 303, started.text
    target = started.headers["location"]
    query = parse_qs(urlsplit(target).query)
    assert query["acr_values"] == ["eidas1"]
    assert query["code_challenge_method"] == ["S256"]
    assert query["client_id"] == [CLIENT]
    assert {"state", "nonce", "code_challenge"} <= set(query)
    back = pick_at_idp(idp, target, login)
    return await browser.get(back.removeprefix(BASE))


def set_cookie(response: httpx.Response, name: str) -> str | None:
    for header in response.headers.get_list("set-cookie"):
        if header.startswith(f"{name}="):
            return header
    return None


async def test_a_regulator_signs_in_sees_who_they_are_and_signs_out(
    app: FastAPI, browser: httpx.AsyncClient, idp: Idp
) -> None:
    await regulator_account(app, REGULATOR_ID)
    answer = await sign_in(browser, idp, next_path="/auth/me")
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/auth/me"
    cookie = set_cookie(answer, "__Host-sas_session")
    assert cookie is not None
    attributes = cookie.lower()
    assert "httponly" in attributes and "secure" in attributes and "samesite=lax" in attributes
    assert "path=/" in attributes and "domain=" not in attributes

    me = await browser.get("/auth/me")
    assert me.status_code == 200
    assert (
        "camille fictif" in me.text.lower() and REGULATOR_ID in me.text and "regulator" in me.text
    )
    assert me.headers["cache-control"] == "no-store"

    csrf = re.search(r'name="csrf" value="([^"]+)"', me.text)
    assert csrf is not None
    refused = await browser.post("/auth/logout", data={"csrf": "forged"})
    assert refused.status_code == 403
    assert (await browser.get("/auth/me")).status_code == 200  # still signed in

    out = await browser.post("/auth/logout", data={"csrf": unescape(csrf.group(1))})
    assert out.status_code == 303
    end = out.headers["location"]
    assert end.startswith(idp.endpoint("end_session"))
    assert parse_qs(urlsplit(end).query)["post_logout_redirect_uri"] == [f"{BASE}/auth/logged-out"]
    assert (await browser.get("/auth/me")).status_code == 303  # signed out here
    assert idp.http.get(end).status_code in (302, 303)  # and at the IdP


async def test_without_a_regulator_account_the_login_is_refused(
    app: FastAPI, browser: httpx.AsyncClient, idp: Idp
) -> None:
    answer = await sign_in(browser, idp, login="generaliste-modele")
    assert answer.status_code == 403
    assert "compte régulateur" in answer.text
    assert set_cookie(answer, "__Host-sas_session") is None


async def test_a_deactivated_account_no_longer_signs_in(
    app: FastAPI, browser: httpx.AsyncClient, idp: Idp
) -> None:
    await regulator_account(app, REGULATOR_ID, active=False)
    answer = await sign_in(browser, idp)
    assert answer.status_code == 403
    assert set_cookie(answer, "__Host-sas_session") is None


async def test_a_configured_person_role_signs_in_without_an_account(store: Store, idp: Idp) -> None:
    settings = login_settings(idp, person_roles={"0759912348": "admin"})
    application = create_app(settings, store=store)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application, client=("127.0.0.1", 5000))
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as browser:
            answer = await sign_in(browser, idp, login="infirmier-essai")
            assert answer.status_code == 303
            assert "admin" in (await browser.get("/auth/me")).text


async def test_a_state_that_does_not_match_is_refused(
    app: FastAPI, browser: httpx.AsyncClient, idp: Idp
) -> None:
    await regulator_account(app, REGULATOR_ID)
    started = await browser.get("/auth/login")
    back = pick_at_idp(idp, started.headers["location"], "regulateur-fictif")
    forged = re.sub(r"state=[^&]+", "state=forged", back)
    answer = await browser.get(forged.removeprefix(BASE))
    assert answer.status_code == 401
    assert "state" in answer.text
    assert set_cookie(answer, "__Host-sas_session") is None


async def test_a_replayed_authorization_code_is_refused(
    app: FastAPI, browser: httpx.AsyncClient, idp: Idp
) -> None:
    await regulator_account(app, REGULATOR_ID)
    started = await browser.get("/auth/login")
    login_cookie = browser.cookies.get("__Secure-sas_login")
    back = pick_at_idp(idp, started.headers["location"], "regulateur-fictif")
    first = await browser.get(back.removeprefix(BASE))
    assert first.status_code == 303
    # an attacker who kept the redirect and the login cookie tries again
    browser.cookies.clear()
    browser.cookies.set("__Secure-sas_login", login_cookie or "", domain="testserver.local")
    again = await browser.get(back.removeprefix(BASE))
    assert again.status_code == 401
    assert "invalid_grant" in again.text
    assert set_cookie(again, "__Host-sas_session") is None


async def test_a_pkce_verifier_that_does_not_match_is_refused(
    app: FastAPI, browser: httpx.AsyncClient, idp: Idp
) -> None:
    await regulator_account(app, REGULATOR_ID)
    started = await browser.get("/auth/login")
    cookies = Cookies(SESSION_SECRET, max_age=3600)
    pending = cookies.load_login(browser.cookies.get("__Secure-sas_login"))
    assert pending is not None
    wrong = PendingLogin(pending.state, pending.nonce, "x" * 64, pending.next_path)
    browser.cookies.clear()
    browser.cookies.set("__Secure-sas_login", cookies.dump_login(wrong), domain="testserver.local")
    back = pick_at_idp(idp, started.headers["location"], "regulateur-fictif")
    answer = await browser.get(back.removeprefix(BASE))
    assert answer.status_code == 401
    assert set_cookie(answer, "__Host-sas_session") is None


async def test_a_tampered_session_cookie_is_no_session(
    app: FastAPI, browser: httpx.AsyncClient, idp: Idp
) -> None:
    await regulator_account(app, REGULATOR_ID)
    assert (await sign_in(browser, idp)).status_code == 303
    value = browser.cookies.get("__Host-sas_session")
    assert value
    payload, _, signature = value.partition(".")
    browser.cookies.clear()
    browser.cookies.set(
        "__Host-sas_session", payload.replace("r", "s", 1) + "." + signature, domain="testserver"
    )
    me = await browser.get("/auth/me")
    assert me.status_code == 303 and me.headers["location"].startswith("/auth/login")
    browser.cookies.clear()
    browser.cookies.set("__Host-sas_session", "x" * 5000, domain="testserver.local")
    assert (await browser.get("/auth/me")).status_code == 303


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/\\evil"])
async def test_login_never_sends_the_browser_off_the_server(
    app: FastAPI, browser: httpx.AsyncClient, idp: Idp, target: str
) -> None:
    await regulator_account(app, REGULATOR_ID)
    answer = await sign_in(browser, idp, next_path=target)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/auth/me"


async def test_a_callback_without_a_login_started_here_is_refused(
    browser: httpx.AsyncClient,
) -> None:
    answer = await browser.get("/auth/callback", params={"code": "x", "state": "y"})
    assert answer.status_code == 400
    assert "text/html" in answer.headers["content-type"]


async def test_an_idp_refusal_is_a_clear_page(browser: httpx.AsyncClient) -> None:
    await browser.get("/auth/login")
    answer = await browser.get("/auth/callback", params={"error": "access_denied"})
    assert answer.status_code == 401
    assert "Pro Santé Connect" in answer.text


async def test_login_pages_without_psc_configured_say_so(store: Store) -> None:
    application = create_app(Settings(auth="on", validate_profiles=False), store=store)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application, client=("127.0.0.1", 5000))
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as browser:
            answer = await browser.get("/auth/login")
            assert answer.status_code == 503
            assert "FHIR_PSC_ISSUER" in answer.text
