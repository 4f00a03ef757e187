"""The README's run command, for real: ``scripts/run`` loads the demo and serves it with
authentication on (HTTPS, development certificates, the local Pro Santé Connect-compatible
identity provider); then a system calls with its client certificate, the SAS platform with a
client-credentials Bearer token, and a regulator signs in through the identity provider's page
and sees who they are. Without credentials the API answers 401. Stopping the script stops
both servers."""

from __future__ import annotations

import os
import re
import signal
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.auth.dev_idp.conftest import login_form
from tests.e2e.test_serve import ROOT, free_port, with_packages

pytestmark = pytest.mark.e2e


@dataclass
class Demo:
    base: str
    issuer: str
    certs: Path
    log: Path

    def client(self, system: str | None = None) -> httpx.Client:
        """A client trusting the demo's CA, with ``system``'s client certificate if named."""
        context = ssl.create_default_context(cafile=self.certs / "ca.pem")
        if system is not None:
            context.load_cert_chain(self.certs / f"{system}.pem", self.certs / f"{system}.key")
        return httpx.Client(base_url=self.base, verify=context)


def port_is_free(port: int) -> bool:
    with httpx.Client() as http:
        try:
            http.get(f"http://127.0.0.1:{port}/", timeout=0.5)
        except httpx.TransportError:
            return True
    return False


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    folder = tmp_path_factory.mktemp("demo")
    port, idp_port = free_port(), free_port()
    env = with_packages({**os.environ})
    env.pop("FHIR_AUTH", None)  # the tests' FHIR_AUTH=none (tests/conftest.py): not here
    env.update(
        SETUP_EXTRA="dev",  # what the test command installed: nothing more to install
        FHIR_DEMO_DIR=str(folder),
        PORT=str(port),
        IDP_PORT=str(idp_port),
        FHIR_LOG_FORMAT="json",
    )
    log = folder / "run.log"
    with log.open("wb") as out:
        script = subprocess.Popen(
            [str(ROOT / "scripts" / "run")],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped whole below
        )
    running = Demo(
        base=f"https://127.0.0.1:{port}",
        issuer=f"http://127.0.0.1:{idp_port}/auth/realms/esante-wallet",
        certs=folder / "dev-certs",
        log=log,
    )
    try:
        deadline = time.monotonic() + 240
        while "Uvicorn running on" not in log.read_text(errors="replace"):
            assert script.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.3)
        yield running
    finally:
        os.killpg(script.pid, signal.SIGINT)  # as Ctrl-C in the terminal
        try:
            script.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(script.pid, signal.SIGKILL)
            script.wait()
    assert port_is_free(port) and port_is_free(idp_port), "a demo server outlived the script"


def test_the_script_says_how_to_call_and_sign_in(demo: Demo) -> None:
    text = demo.log.read_text()
    assert f"--cert {demo.certs}/regulator.pem --key {demo.certs}/regulator.key" in text
    assert "grant_type=client_credentials" in text
    assert f"{demo.base}/auth/login" in text and "regulateur-fictif" in text


def test_no_credentials_is_a_401_operation_outcome(demo: Demo) -> None:
    with demo.client() as http:
        answer = http.get("/Slot", params={"status": "free"})
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert answer.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize("system", ["regulator", "platform"])
def test_a_system_with_its_client_certificate_searches_slots(demo: Demo, system: str) -> None:
    with demo.client(system) as http:
        answer = http.get("/Slot", params={"status": "free", "_count": "3"})
    assert answer.status_code == 200, answer.text
    bundle = answer.json()
    assert bundle["total"] > 0 and len(bundle["entry"]) == 3


def test_the_platform_with_a_bearer_token(demo: Demo) -> None:
    token = httpx.post(
        f"{demo.issuer}/protocol/openid-connect/token",
        data={"grant_type": "client_credentials"},
        auth=("sas-platform", "dev-secret-sas-platform"),
    )
    assert token.status_code == 200, token.text
    with demo.client() as http:
        bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
        answer = http.get("/Practitioner", params={"_count": "50"}, headers=bearer)
        forged = http.get("/Practitioner", headers={"Authorization": "Bearer x.y.z"})
    assert answer.status_code == 200, answer.text
    ids = {entry["resource"]["id"] for entry in answer.json()["entry"]}
    assert "regul-regulateur-fictif" in ids  # the demo's regulator account was loaded
    assert forged.status_code == 401
    assert 'error="invalid_token"' in forged.headers["www-authenticate"]


def test_a_regulator_signs_in_through_the_identity_provider(demo: Demo) -> None:
    with demo.client() as browser, httpx.Client() as at_idp:
        started = browser.get("/auth/login", params={"next": "/auth/me"})
        assert started.status_code == 303, started.text
        authorize = started.headers["location"]
        assert authorize.startswith(demo.issuer)
        assert parse_qs(urlsplit(authorize).query)["acr_values"] == ["eidas1"]
        page = at_idp.get(authorize)
        assert page.status_code == 200, page.text
        action, hidden, logins = login_form(page.text)
        assert "regulateur-fictif" in logins
        chosen = at_idp.post(action, data={**hidden, "login": "regulateur-fictif"})
        assert chosen.status_code == 302, chosen.text
        back = chosen.headers["location"]
        assert back.startswith(f"{demo.base}/auth/callback?")
        signed_in = browser.get(back)
        assert signed_in.status_code == 303, signed_in.text
        assert signed_in.headers["location"] == "/auth/me"
        me = browser.get("/auth/me")
        assert me.status_code == 200, me.text
        assert "camille fictif" in me.text.lower() and "819999000011" in me.text
        assert "regulator" in me.text
        # the session is for the server's pages, not a credential for the API
        assert browser.get("/Slot").status_code == 401
        csrf = re.search(r'name="csrf" value="([^"]+)"', me.text)
        assert csrf is not None
        out = browser.post("/auth/logout", data={"csrf": csrf.group(1)})
        assert out.status_code == 303 and out.headers["location"].startswith(demo.issuer)
        assert browser.get("/auth/me").status_code == 303  # signed out
