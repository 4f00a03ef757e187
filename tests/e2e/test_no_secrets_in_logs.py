"""No credential ever reaches the logs or the audit trail.

A real ``fhir-server serve`` over HTTPS with FHIR_AUTH=on, the dev IdP (tokens, web login)
and client certificates; every log line at debug level, as JSON. It is used the ways that
carry secrets: a web login (authorization code, login and session cookies), a system's and
a person's Bearer tokens (valid and tampered with), client certificates (allowed and not).
Then the whole log and every stored AuditEvent are searched for each secret.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from auth.dev_idp import DevIdpConfig
from tests.auth.dev_idp.conftest import (
    SYSTEM,
    SYSTEM_SECRET,
    WEB,
    WEB_SECRET,
    Idp,
    clients_for_tests,
    login_form,
    serving,
    tokens_for,
)
from tests.conftest import open_store
from tests.e2e import tls_support
from tests.e2e.test_serve import BIN, free_port, run, with_packages
from tests.e2e.tls_support import Certs, make_certs, tls_env, tls_serving

pytestmark = pytest.mark.e2e
NATIONAL_ID = "819999000011"  # the dev IdP's "regulateur-fictif"
SESSION_SECRET = "session-secret-that-must-never-be-logged-0123456789"


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def idp(port: int) -> Iterator[Idp]:
    """The dev IdP, with this test's server's callback registered for the web client."""
    callback = f"https://127.0.0.1:{port}/auth/callback"
    clients = tuple(
        replace(c, redirect_uris=(*c.redirect_uris, callback)) if c.client_id == WEB else c
        for c in clients_for_tests()
    )
    with serving(DevIdpConfig(clients=clients)) as running:
        yield running


def web_login(base: str, certs: Certs, idp: Idp) -> dict[str, str]:
    """A regulator signs in through the server's pages: the secrets that went by."""
    with httpx.Client(base_url=base, verify=certs.client_context(None), timeout=10) as browser:
        started = browser.get("/auth/login", params={"next": "/auth/me"})
        assert started.status_code == 303, started.text
        login_cookie = started.cookies.get("__Secure-sas_login")
        assert login_cookie
        page = idp.http.get(started.headers["location"])
        action, hidden, _ = login_form(page.text)
        back = idp.http.post(action, data={**hidden, "login": "regulateur-fictif"})
        callback = back.headers["location"]
        code = parse_qs(urlsplit(callback).query)["code"][0]
        answer = browser.get(callback.removeprefix(base))
        assert answer.status_code == 303, answer.text
        session = answer.cookies.get("__Host-sas_session")
        assert session
        me = browser.get("/auth/me", headers={"Cookie": f"__Host-sas_session={session}"})
        assert me.status_code == 200, me.text
        # the API does not take cookies: still audited, still not logged
        assert (
            browser.get("/Slot", headers={"Cookie": f"__Host-sas_session={session}"}).status_code
            == 401
        )
    return {"authorization code": code, "login cookie": login_cookie, "session cookie": session}


def system_token(idp: Idp) -> str:
    answer = idp.http.post(
        idp.endpoint("token"),
        data={"grant_type": "client_credentials", "scope": "system/Slot.read"},
        auth=(SYSTEM, SYSTEM_SECRET),
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


def pem_lines(path: Path) -> list[str]:
    """The base64 lines of a PEM file (its header lines are not secret)."""
    return [line for line in path.read_text().splitlines() if line and "-----" not in line]


def pieces(name: str, secret: str) -> dict[str, str]:
    """A secret and, for a JWT, each of its parts: a part alone must not appear either."""
    found = {name: secret}
    if secret.count(".") == 2:
        found.update(
            {f"{name} part {i}": p for i, p in enumerate(secret.split(".")) if len(p) > 16}
        )
    return found


async def stored_audit_events(url: str) -> list[bytes]:
    store = open_store(url)
    try:
        page = await store.history(
            res_type="AuditEvent", res_id=None, since=None, at=None, count=5000, offset=0
        )
    finally:
        await store.close()
    return [s.content for s in page.entries]


def test_no_token_cookie_or_key_in_the_logs_or_the_trail(
    database_url: str, tmp_path: Path, port: int, idp: Idp, monkeypatch: pytest.MonkeyPatch
) -> None:
    certs = make_certs(tmp_path / "certs")
    url = database_url
    env = tls_env(
        certs,
        with_packages(
            {
                **os.environ,
                "FHIR_DATABASE_URL": url,
                "FHIR_LOG_LEVEL": "debug",
                "FHIR_LOG_FORMAT": "json",
                "FHIR_AUDIT_INTERVAL_MS": "10",
                "FHIR_PSC_ISSUER": idp.issuer,
                "FHIR_PSC_CLIENT_ID": WEB,
                "FHIR_PSC_CLIENT_SECRET": WEB_SECRET,
                "FHIR_SYSTEM_CLIENTS": json.dumps({SYSTEM: "platform"}),
                "FHIR_PERSON_ROLES": json.dumps({NATIONAL_ID: "admin"}),
                "FHIR_SESSION_SECRET": SESSION_SECRET,
            }
        ),
    )
    if not url.startswith("sqlite"):
        migrated = run([str(BIN / "fhir-server"), "migrate"], env)
        assert migrated.returncode == 0, migrated.stderr
    monkeypatch.setattr(tls_support, "free_port", lambda: port)  # the registered callback's
    log = tmp_path / "server.log"
    secrets: dict[str, str] = {
        "session secret": SESSION_SECRET,
        "web client secret": WEB_SECRET,
        "system client secret": SYSTEM_SECRET,
    }
    with tls_serving(env, certs, log) as base:
        secrets |= web_login(base, certs, idp)
        system = system_token(idp)
        person = tokens_for(idp, "regulateur-fictif")
        secrets |= pieces("system token", system)
        secrets |= pieces("person token", person["access_token"])
        secrets |= pieces("id token", person["id_token"])
        tampered = system[:-4] + ("AAAA" if not system.endswith("AAAA") else "BBBB")
        secrets["tampered token"] = tampered
        anonymous = certs.client_context(None)
        with httpx.Client(base_url=base, verify=anonymous, timeout=10) as c:
            bearer = {"Authorization": f"Bearer {system}"}
            assert (
                c.get("/Slot", params={"access_token": system}, headers=bearer).status_code == 200
            )
            refused = c.get("/Slot", headers={"Authorization": f"Bearer {tampered}"})
            assert refused.status_code == 401
            admin = {"Authorization": f"Bearer {person['access_token']}"}
            assert c.get("/Slot", headers=admin).status_code == 200
        for name, status in (("valid", 200), ("bad_cn", 403)):
            with httpx.Client(base_url=base, verify=certs.client_context(name), timeout=10) as c:
                assert c.get("/Slot").status_code == status
        # the person is an admin here: the trail is searchable by their national id
        with httpx.Client(base_url=base, verify=anonymous, timeout=10) as c:
            for _ in range(50):  # the writer flushes every 10 ms
                mine = c.get("/AuditEvent", params={"altid": NATIONAL_ID}, headers=admin)
                assert mine.status_code == 200, mine.text
                if mine.json().get("total", 0) >= 1:
                    break
            assert mine.json()["total"] >= 1
    for name in ("valid", "bad_cn"):
        for i, line in enumerate(pem_lines(certs.clients[name].key)):
            secrets[f"{name} private key line {i}"] = line
    for i, line in enumerate(pem_lines(certs.server.key)):
        secrets[f"server private key line {i}"] = line

    text = log.read_text(errors="replace")
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert any(line.get("path") == "/auth/callback" for line in lines)  # the log is complete
    requests = [line for line in lines if line.get("event") == "request"]
    assert len(requests) >= 8
    # the access line says who called (the structured line of the audit trail)
    assert any(
        line.get("client_id") == "sas-platform" and line.get("role") == "platform"
        for line in requests
    )
    assert any(line.get("user") == NATIONAL_ID and line.get("role") == "admin" for line in requests)
    events = asyncio.run(stored_audit_events(url))
    assert len(events) >= 8
    trail = b"\n".join(events).decode()
    assert re.search(r'"name":"sas-platform"', trail)
    leaked = {name for name, secret in secrets.items() if secret in text or secret in trail}
    assert leaked == set()
