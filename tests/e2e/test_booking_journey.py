"""The whole SAS journey, end to end, through real processes on loopback (SQLite and
PostgreSQL): a vendor's agenda is ingested; regulation software and the vendor subscribe
(rest-hook); a regulator finds the slot with the SAS search, opens its booking link in
Debian's headless chromium, signs in through the dev IdP, fills the patient's minimal data,
books; the next search no longer shows the slot; the stored Appointment holds the patient's
data for the practitioner, the SAS platform receives the Appointment without any of it
(INT_R03, over mutual TLS, from the persistent outbox) and both subscribers are notified.

The API runs anonymous as admin here (the page's sign-in is real): who may see and
subscribe to what is tested in tests/subscriptions and tests/api/test_policy.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from fhir_server.booking.sas_content import OPERATOR_URL
from tests.delivery.receiver import make_pki
from tests.delivery.receiver import receiving as platform_receiving
from tests.e2e.test_booking_page import (
    CHROMIUM,
    CHROMIUM_ARGS,
    PATIENT,
    RPPS,
    booking_stack,
    fill,
    free_slots,
    ingest_slot,
)
from tests.subscriptions.receiver import receiving as hook_receiving

pytestmark = pytest.mark.e2e
IDNPS_SYSTEM = "urn:oid:1.2.250.1.71.4.2.1"
APPOINTMENT_SYSTEM = "urn:oid:1.2.250.1.213.3.6"  # our test software's appointment ids


def subscribe(base: str, criteria: str, endpoint: str) -> str:
    body = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "journey test",
        "criteria": criteria,
        "channel": {"type": "rest-hook", "endpoint": endpoint, "payload": "application/fhir+json"},
    }
    answer = httpx.post(f"{base}/Subscription", json=body, timeout=30)
    assert answer.status_code == 201, answer.text
    assert answer.json()["status"] == "active"
    return str(answer.json()["id"])


def test_search_link_sign_in_book_then_every_party_knows(database_url: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    pki = make_pki(tmp_path / "pki")
    with (
        platform_receiving(pki) as platform,
        hook_receiving() as hooks,
        booking_stack(
            database_url,
            tmp_path,
            FHIR_SAS_APPOINTMENTS_URL=platform.url,
            FHIR_SAS_CLIENT_CERT=str(pki.client_cert),
            FHIR_SAS_CLIENT_KEY=str(pki.client_key),
            FHIR_SAS_CA_FILE=str(pki.ca),
            FHIR_SAS_IDENTIFIER_SYSTEM=APPOINTMENT_SYSTEM,
        ) as base,
    ):
        ingest_slot(base, datetime.now(UTC) + timedelta(days=1))
        [slot] = free_slots(base)  # the regulator's SAS search
        schedule = httpx.get(f"{base}/{slot['schedule']['reference']}", timeout=30).json()
        practitioner = schedule["actor"][0]["reference"]
        subscribe(base, "Appointment?status=booked", f"{hooks.url}/ok/regulation")
        subscribe(base, f"Slot?schedule.actor={practitioner}", f"{hooks.url}/ok/vendor")

        with sync_playwright() as pw:
            chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = chromium.new_context(java_script_enabled=False, locale="fr-FR").new_page()
                page.goto(slot["comment"] + "&origin=sas")
                page.click('button[value="regulateur-fictif"]')  # the dev IdP's sign-in
                fill(page, PATIENT)
                page.get_by_label("Le patient accepte ce créneau").check()
                page.get_by_role("button", name="Réserver ce créneau").click()
                assert page.locator("h1").inner_text() == "Rendez-vous confirmé"
                reference = page.locator("#reference").inner_text()
            finally:
                chromium.close()
        appointment_id = reference.removeprefix("Appointment/")

        assert free_slots(base) == []  # gone from the next search

        # Stored here, for the practitioner: the patient's minimal data, contained.
        stored = httpx.get(f"{base}/Appointment/{appointment_id}", timeout=30).json()
        [patient] = stored["contained"]
        assert patient["name"] == [{"family": "Bérard", "given": ["Lucien"]}]
        assert patient["telecom"] == [{"system": "phone", "value": "+33798765432"}]
        assert {"reference": "#patient", "type": "Patient"} in [
            p["actor"] for p in stored["participant"]
        ]

        # The SAS platform: the Appointment over mTLS, with the regulator and the
        # practitioner by their national ids (FrAppointmentSAS).
        [sent] = platform.wait_for(1)
        assert (sent.method, sent.path, sent.client_cn) == ("POST", "/Appointment", "editeur-test")
        assert sent.body["status"] == "booked"
        assert sent.body["slot"] == [{"reference": f"Slot/{slot['id']}"}]
        [operator] = [e for e in sent.body["extension"] if e["url"] == OPERATOR_URL]
        assert operator["valueReference"]["identifier"]["system"] == IDNPS_SYSTEM
        practitioners = [
            p["actor"].get("identifier", {}).get("value") for p in sent.body["participant"]
        ]
        assert "8" + RPPS in practitioners
        # ...and no patient data at all: no contained Patient, no participant for it
        assert "contained" not in sent.body
        assert all(
            not p["actor"].get("reference", "").startswith("#") for p in sent.body["participant"]
        )
        raw = orjson.dumps(sent.body).decode()
        for value in ("Bérard", "Lucien", "1952-11-03", "798765432", "Patient"):
            assert value not in raw, value

        # Regulation software: the booked Appointment; the vendor: its slot, now busy.
        [booked] = hooks.wait_for("/ok/regulation/", 1)
        assert booked.path == f"/ok/regulation/Appointment/{appointment_id}"
        assert orjson.loads(booked.body)["status"] == "booked"
        busy = notified_slot_statuses(hooks.wait_for("/ok/vendor/", 1))
        if "busy" not in busy:  # the vendor's first notice may be an earlier slot version
            busy = notified_slot_statuses(hooks.wait_for("/ok/vendor/", 2))
        assert busy[-1] == "busy"


def notified_slot_statuses(hits: list[Any]) -> list[str]:
    return [orjson.loads(hit.body)["status"] for hit in hits]
