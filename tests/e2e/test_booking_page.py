"""The booking page in a real headless Chromium (Debian's, driven by Playwright; JavaScript
off), against a real ``fhir-server serve`` and a real ``fhir-server dev-idp`` on loopback, on
SQLite and PostgreSQL.

A vendor feed is ingested (``$ingest``): its slot's ``comment`` is the server's booking link.
A regulator opens it (with the platform's ``&origin=sas``), is sent to sign in, picks a
fictional regulator on the dev IdP's page, comes back, sees the slot, fills the patient's
minimal data (a wrong birth date first: the French error, the values kept), books, sees the
confirmation with the patient's name; the stored Appointment holds the contained Patient and
the server's log none of it; the next SAS search no longer shows the slot; a second
regulator who opened the same slot meanwhile is told in French that it was taken; the
replayed form books nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from auth.dev_idp import REALM_PATH
from tests.ingest.simple_format import feed_json, person
from tests.servers import BIN, ROOT, free_port, python_launch, with_packages

pytestmark = pytest.mark.e2e
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CLIENT, SECRET = "sas-fhir-server-browser", "browser-test-secret"
REGULATORS = {"819999000011": "regulator", "819999000029": "regulator"}
RPPS = "10000000001"
# the patient's minimal data, typed by the regulator (labels of the form's fields)
PATIENT = {
    "Nom": "Bérard",
    "Prénom": "Lucien",
    "Date de naissance": "1952-11-03",
    "Téléphone": "07 98 76 54 32",
}


def need_chromium() -> None:
    """Without Debian's chromium the test cannot run: a skip on a developer's machine, a
    failure in CI (CI=true), where scripts/test installs it."""
    if CHROMIUM.is_file():
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{CHROMIUM} is missing: scripts/test installs Debian's chromium")
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium, or run scripts/test)")


@contextmanager
def process(args: list[str], env: dict[str, str], log: Path, ready: str) -> Iterator[None]:
    """A server process on loopback, once ``ready`` answers 200; stopped after."""
    with log.open("wb") as out:
        proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text(errors="replace")
            try:
                if httpx.get(ready, timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            pytest.fail(f"{args[0]} did not start in 60 s:\n{log.read_text(errors='replace')}")
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[str]:
    # info level: the page's log lines are written, and must carry no patient data
    with booking_stack(database_url, tmp_path, FHIR_LOG_LEVEL="info") as base:
        yield base


@contextmanager
def booking_stack(database_url: str, tmp_path: Path, **extra_env: str) -> Iterator[str]:
    """The dev IdP and the FHIR server (web sign-in on; the API anonymous as admin, so the
    test can ingest and search without credentials of its own), ``extra_env`` added to the
    server's environment."""
    need_chromium()
    port, idp_port = free_port(), free_port()
    base, idp = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{idp_port}"
    clients = tmp_path / "clients.json"
    web = {
        "client_id": CLIENT,
        "client_secret": SECRET,
        "redirect_uris": [f"{base}/auth/callback"],
        "post_logout_redirect_uris": [f"{base}/auth/logged-out"],
        "grant_types": ["authorization_code"],
        "scopes": ["openid", "scope_all"],
    }
    clients.write_text(json.dumps({"clients": [web]}))
    env = with_packages(
        {
            **os.environ,
            "FHIR_DATABASE_URL": database_url,
            "FHIR_LOG_LEVEL": "warning",
            "FHIR_AUTH": "none",
            "FHIR_DEFAULT_ROLE": "admin",
            "FHIR_AUDIT": "false",
            "FHIR_PSC_ISSUER": idp + REALM_PATH,
            "FHIR_PSC_CLIENT_ID": CLIENT,
            "FHIR_PSC_CLIENT_SECRET": SECRET,
            "FHIR_SESSION_SECRET": "a-browser-test-session-key-of-some-length",
            "FHIR_SESSION_COOKIE_SECURE": "false",  # plain HTTP on loopback
            "FHIR_PERSON_ROLES": json.dumps(REGULATORS),
            **extra_env,
        }
    )
    idp_args = [str(BIN / "fhir-server"), "dev-idp", "--port", str(idp_port)]
    discovery = f"{idp}{REALM_PATH}/.well-known/openid-configuration"
    serve = [*python_launch("tests.ingest.simple_format"), "serve", "--host", "127.0.0.1"]
    with (
        process([*idp_args, "--clients", str(clients)], env, tmp_path / "idp.log", discovery),
        process(
            [*serve, "--port", str(port), "--migrate"],
            env,
            tmp_path / "server.log",
            f"{base}/metadata",
        ),
    ):
        yield base


def ingest_slot(base: str, start: datetime) -> None:
    paris = start.astimezone(ZoneInfo("Europe/Paris"))
    local = paris.replace(tzinfo=None).isoformat(timespec="minutes")
    slot = {"key": "s1", "start": local, "end": None}
    doc = feed_json([person("dr-martin", RPPS, [slot])], window=None)
    answer = httpx.post(
        f"{base}/$ingest?format=test-simple&vendor=vend",
        content=json.dumps(doc),
        headers={"Content-Type": "application/json"},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text


def free_slots(base: str) -> list[dict[str, Any]]:
    """The SAS slot search (INT_R01: the practitioner's free slots, with their schedule)."""
    day = datetime.now(UTC).date()
    params = {
        "start": [f"ge{day.isoformat()}", f"le{(day + timedelta(days=3)).isoformat()}"],
        "schedule.actor:Practitioner.identifier": f"urn:oid:1.2.250.1.71.4.2.1|8{RPPS}",
        "status": "free",
        "_include": "Slot:schedule",
    }
    answer = httpx.get(f"{base}/Slot", params=params, timeout=30)
    assert answer.status_code == 200, answer.text
    entries = answer.json().get("entry", [])
    return [e["resource"] for e in entries if e["resource"]["resourceType"] == "Slot"]


def fill(page: Any, values: dict[str, str]) -> None:
    """Type the patient's data into the fields, found by their labels."""
    for label, value in values.items():
        page.get_by_label(label, exact=True).fill(value)


def test_a_regulator_books_from_the_slot_link_in_a_real_browser(
    server: str, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    base = server
    ingest_slot(base, datetime.now(UTC) + timedelta(days=1))
    [slot] = free_slots(base)
    link = slot["comment"]
    assert link == f"{base}/booking?slot={slot['id']}"
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            first = chromium.new_context(java_script_enabled=False, locale="fr-FR")
            second = chromium.new_context(java_script_enabled=False, locale="fr-FR")
            mine, theirs = first.new_page(), second.new_page()
            for page, login in ((mine, "regulateur-fictif"), (theirs, "regulateur-exemple")):
                page.goto(link + "&origin=sas")
                assert "/auth/realms/" in page.url  # sent to sign in, at the IdP
                page.click(f'button[value="{login}"]')
                assert page.url == link + "&origin=sas"  # and back to the same link
                assert page.locator("h1").inner_text() == "Réserver ce créneau"
                assert "RPPS " + RPPS in page.locator("#creneau-professionnel").inner_text()
                assert page.locator("html").get_attribute("lang") == "fr"
            replay = {
                name: mine.locator(f'input[name="{name}"]').get_attribute("value") or ""
                for name in ("csrf", "form_id", "origin")
            }

            fill(mine, {**PATIENT, "Date de naissance": "2999-01-01"})
            mine.get_by_label("Le patient accepte ce créneau").check()
            mine.get_by_role("button", name="Réserver ce créneau").click()
            assert mine.locator("h1").inner_text() == "Erreur : réserver ce créneau"
            summary = mine.locator("#erreurs")
            assert "ne peut pas être dans le futur" in summary.inner_text()
            summary.get_by_role("link").click()  # the summary's link leads to the field
            assert mine.url.endswith("#birth_date")
            assert mine.get_by_label("Nom", exact=True).input_value() == PATIENT["Nom"]
            assert mine.get_by_label("Téléphone").input_value() == PATIENT["Téléphone"]
            assert mine.locator("#birth_date").get_attribute("aria-invalid") == "true"
            assert free_slots(base) != []  # nothing booked

            fill(mine, {"Date de naissance": PATIENT["Date de naissance"]})
            mine.get_by_label("Le patient accepte ce créneau").check()
            mine.get_by_role("button", name="Réserver ce créneau").click()
            assert mine.locator("h1").inner_text() == "Rendez-vous confirmé"
            reference = mine.locator("#reference").inner_text()
            assert reference.startswith("Appointment/")
            assert mine.locator("#patient").inner_text() == "Lucien BÉRARD"

            assert free_slots(base) == []  # the next SAS search no longer shows it

            fill(theirs, PATIENT)
            theirs.get_by_label("Le patient accepte ce créneau").check()
            theirs.get_by_role("button", name="Réserver ce créneau").click()
            assert theirs.locator("h1").inner_text() == "Créneau déjà pris"
            assert "vient d'être réservé" in theirs.locator("#message").inner_text()

            action = f"{base}/booking?slot={slot['id']}"
            typed = {
                "family": "Bérard",
                "given": "Lucien",
                "birth_date": "1952-11-03",
                "phone": "0798765432",
                "confirm": "oui",
            }
            again = first.request.post(action, form={**replay, **typed})
            assert again.status == 409
            assert "déjà servi" in again.text()
            forged = first.request.post(action, form={"form_id": replay["form_id"]})
            assert forged.status == 403
        finally:
            chromium.close()
    booked = httpx.get(f"{base}/Appointment", timeout=30).json().get("entry", [])
    assert [e["resource"]["id"] for e in booked] == [reference.removeprefix("Appointment/")]
    [patient] = booked[0]["resource"]["contained"]
    assert patient["name"] == [{"family": "Bérard", "given": ["Lucien"]}]
    assert patient["birthDate"] == "1952-11-03"
    assert patient["telecom"] == [{"system": "phone", "value": "+33798765432"}]
    log = (tmp_path / "server.log").read_text(errors="replace")
    assert "booked from the page" in log
    for value in ("Bérard", "B\\u00e9rard", "Lucien", "1952", "798765432", "07 98"):
        assert value not in log, value
