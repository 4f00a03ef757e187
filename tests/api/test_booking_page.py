"""The booking page behind Slot.comment, in process (https://testserver) with the dev IdP on
loopback, on SQLite and PostgreSQL: sign-in and back, the slot in French, a booking through
the create interaction, and every refusal as a French page with its status, nothing booked.
The same in a real browser against real processes: tests/e2e/test_booking_page.py.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import httpx
import orjson
import pytest
from fastapi import FastAPI

from auth.dev_idp import ClientConfig, DevIdpConfig
from auth.dev_idp.config import DEFAULT_CLIENTS
from fhir_server.api.booking_view import french_day, french_time
from fhir_server.app import create_app
from fhir_server.core.caller import SYSTEM, Caller
from fhir_server.interactions import create, delete, read, search
from fhir_server.interactions.context import Context
from fhir_server.storage.port import Store
from tests.api.booking_data import RPPS, seed, slot, tomorrow_at
from tests.api.test_login import (
    BASE,
    CLIENT,
    REGULATOR_ID,
    SECRET,
    login_settings,
    regulator_account,
    sign_in,
)
from tests.auth.dev_idp.conftest import Idp, serving

PARIS = ZoneInfo("Europe/Paris")
OTHER_REGULATOR = "819999000029"  # the dev IdP's "regulateur-exemple"
GENERALIST = "819999000037"  # "generaliste-modele", made an admin below
ANOTHER_FORM = "urn:uuid:11111111-1111-4111-8111-111111111111"
# the patient's minimal data as a regulator types it, and the confirmation
FILLED = {
    "family": "Durand-Lévêque",
    "given": "Zoé Anne",
    "birth_date": "1987-03-14",
    "phone": "06 12 34 56 78",
    "confirm": "oui",
}


@pytest.fixture(scope="module")
def idp() -> Iterator[Idp]:
    """The dev IdP on loopback, knowing this test server as a web client."""
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


@pytest.fixture
async def app(store: Store, idp: Idp) -> AsyncIterator[FastAPI]:
    settings = login_settings(idp, person_roles={GENERALIST: "admin"})
    application = create_app(settings, store=store)
    async with application.router.lifespan_context(application):
        ctx = system(application)
        await regulator_account(application, REGULATOR_ID)
        await regulator_account(application, OTHER_REGULATOR)
        await seed(
            ctx,
            slot("s-free", tomorrow_at(9)),
            slot("s-other", tomorrow_at(10)),
            slot("s-past", datetime.now(UTC) - timedelta(hours=2)),
            slot("s-busy", tomorrow_at(11), status="busy"),
            slot("s-gone", tomorrow_at(12)),
        )
        await delete.delete(ctx, "Slot", "s-gone")
        yield application


def system(app: FastAPI) -> Context:
    ctx: Context = app.state.wiring.ctx
    return ctx.acting_for(SYSTEM)


@pytest.fixture
async def browser(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(app) as c:
        yield c


def client_of(app: FastAPI) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5000))
    return httpx.AsyncClient(transport=transport, base_url=BASE)


async def signed_in(browser: httpx.AsyncClient, idp: Idp, login: str = "regulateur-fictif") -> None:
    answer = await sign_in(browser, idp, login=login)
    assert answer.status_code == 303, answer.text


def form_of(html: str) -> dict[str, str]:
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', html))
    return {name: unescape(value) for name, value in fields.items()}


async def open_form(browser: httpx.AsyncClient, slot_id: str) -> dict[str, str]:
    page = await browser.get("/booking", params={"slot": slot_id, "origin": "sas"})
    assert page.status_code == 200, page.text
    return form_of(page.text)


async def appointments(app: FastAPI) -> list[dict[str, Any]]:
    req = search.SearchRequest("Appointment", [], BASE)
    body = orjson.loads((await search.search(system(app), req)).body)
    return [e["resource"] for e in body.get("entry", [])]


async def slot_status(app: FastAPI, slot_id: str) -> str:
    stored = await read.read(system(app), "Slot", slot_id)
    status: str = orjson.loads(stored.content)["status"]
    return status


async def test_not_signed_in_goes_to_sign_in_and_comes_back_to_the_same_link(
    browser: httpx.AsyncClient, idp: Idp
) -> None:
    first = await browser.get("/booking?slot=s-free&origin=sas")
    assert first.status_code == 303
    login = urlsplit(first.headers["location"])
    assert login.path == "/auth/login"
    next_path = parse_qs(login.query)["next"][0]
    assert next_path == "/booking?slot=s-free&origin=sas"
    back = await sign_in(browser, idp, next_path=next_path)
    assert back.status_code == 303, back.text
    assert back.headers["location"] == "/booking?slot=s-free&origin=sas"
    page = await browser.get(back.headers["location"])
    assert page.status_code == 200
    assert form_of(page.text)["origin"] == "sas"


async def test_the_page_shows_the_slot_in_french_and_an_accessible_form(
    browser: httpx.AsyncClient, idp: Idp
) -> None:
    await signed_in(browser, idp)
    page = await browser.get("/booking", params={"slot": "s-free"})
    assert page.status_code == 200, page.text
    html = unescape(page.text)
    start = tomorrow_at(9).astimezone(PARIS)
    end = start + timedelta(minutes=15)
    assert '<html lang="fr">' in html
    assert french_day(start) in html
    assert f"de {french_time(start)} à {french_time(end)}" in html
    assert "Dr Hélène Lefèvre (RPPS " + RPPS + ")" in html
    assert "Cabinet des Lilas, 3 rue des Lilas 75019 Paris" in html
    assert "Consultation au cabinet, rendez-vous programmé" in html
    assert '<label for="confirm">' in html and 'id="confirm"' in html
    assert '<button type="submit">' in html
    assert "<script" not in html
    assert page.headers["cache-control"] == "no-store"


async def test_a_regulator_books_and_sees_the_confirmation(
    app: FastAPI, browser: httpx.AsyncClient, idp: Idp
) -> None:
    await signed_in(browser, idp)
    form = await open_form(browser, "s-free")
    answer = await browser.post("/booking?slot=s-free", data={**form, **FILLED})
    assert answer.status_code == 303, answer.text
    done = await browser.get(answer.headers["location"])
    assert done.status_code == 200
    [booked] = await appointments(app)
    assert f"Appointment/{booked['id']}" in done.text
    assert booked["slot"] == [{"reference": "Slot/s-free"}]
    assert booked["status"] == "booked"
    operator = booked["extension"][0]["valueReference"]["identifier"]
    assert operator["value"] == REGULATOR_ID
    assert booked["meta"]["tag"][0]["code"] == "sas"
    assert booked["contained"] == [
        {
            "resourceType": "Patient",
            "id": "patient",
            "name": [{"family": "Durand-Lévêque", "given": ["Zoé Anne"]}],
            "birthDate": "1987-03-14",
            "telecom": [{"system": "phone", "value": "+33612345678"}],
        }
    ]
    assert {
        "actor": {"reference": "#patient", "type": "Patient"},
        "required": "required",
        "status": "accepted",
    } in booked["participant"]
    assert "Zoé Anne DURAND-LÉVÊQUE" in unescape(done.text)
    assert await slot_status(app, "s-free") == "busy"
    # the same form again (back button, double click): nothing more is booked
    again = await browser.post("/booking?slot=s-free", data={**form, **FILLED})
    assert again.status_code == 409
    assert "déjà servi" in unescape(again.text)
    assert len(await appointments(app)) == 1


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda f: {k: v for k, v in f.items() if k != "csrf"}, id="no-token"),
        pytest.param(lambda f: f | {"csrf": "0" * 64}, id="wrong-token"),
        pytest.param(lambda f: f | {"form_id": ANOTHER_FORM}, id="other-form-id"),
        pytest.param(lambda f: {}, id="empty-body"),
    ],
)
async def test_a_forged_form_books_nothing(
    app: FastAPI, browser: httpx.AsyncClient, idp: Idp, change: Any
) -> None:
    await signed_in(browser, idp)
    form = await open_form(browser, "s-free")
    answer = await browser.post("/booking?slot=s-free", data={**change(form), **FILLED})
    assert answer.status_code == 403, answer.text
    assert "Aucun rendez-vous n'a été pris" in unescape(answer.text)
    assert await appointments(app) == []
    assert await slot_status(app, "s-free") == "free"


async def test_a_token_of_another_session_or_slot_books_nothing(
    app: FastAPI, browser: httpx.AsyncClient, idp: Idp
) -> None:
    await signed_in(browser, idp)
    mine = await open_form(browser, "s-free")
    async with client_of(app) as other:
        await signed_in(other, idp, "regulateur-exemple")
        stolen = await other.post("/booking?slot=s-free", data={**mine, **FILLED})
        assert stolen.status_code == 403
    moved = await browser.post("/booking?slot=s-other", data={**mine, **FILLED})
    assert moved.status_code == 403
    assert await appointments(app) == []


async def test_an_unchecked_form_is_shown_again_with_its_error(
    app: FastAPI, browser: httpx.AsyncClient, idp: Idp
) -> None:
    await signed_in(browser, idp)
    form = await open_form(browser, "s-free")
    answer = await browser.post("/booking?slot=s-free", data=form)
    assert answer.status_code == 422
    html = unescape(answer.text)
    assert '<a href="#confirm">' in html and 'aria-invalid="true"' in html
    assert "<title>Erreur" in html
    assert form_of(answer.text)["form_id"] == form["form_id"]  # the same form, resent
    assert await appointments(app) == []


@pytest.mark.parametrize(
    ("slot_id", "status", "words"),
    [
        ("s-past", 410, "passé"),
        ("s-busy", 409, "déjà pris"),
        ("s-gone", 410, "retiré"),
        ("s-none", 404, "n'existe pas"),
        ("bad id!", 404, "incomplet"),
    ],
)
async def test_a_slot_that_cannot_be_booked_says_why(
    browser: httpx.AsyncClient, idp: Idp, slot_id: str, status: int, words: str
) -> None:
    await signed_in(browser, idp)
    page = await browser.get("/booking", params={"slot": slot_id})
    assert page.status_code == status, page.text
    assert words in unescape(page.text)
    assert "OperationOutcome" not in page.text and "<form" not in page.text


async def test_a_slot_taken_meanwhile_is_refused_in_french(
    app: FastAPI, browser: httpx.AsyncClient, idp: Idp
) -> None:
    await signed_in(browser, idp)
    form = await open_form(browser, "s-free")
    async with client_of(app) as other:  # another regulator is quicker
        await signed_in(other, idp, "regulateur-exemple")
        theirs = await open_form(other, "s-free")
        won = await other.post("/booking?slot=s-free", data={**theirs, **FILLED})
        assert won.status_code == 303
    lost = await browser.post("/booking?slot=s-free", data={**form, **FILLED})
    assert lost.status_code == 409
    assert "vient d'être réservé" in unescape(lost.text)
    assert len(await appointments(app)) == 1


async def test_a_slot_booked_through_the_api_is_taken_for_the_page_too(
    app: FastAPI, browser: httpx.AsyncClient, idp: Idp
) -> None:
    await signed_in(browser, idp)
    form = await open_form(browser, "s-free")
    start = tomorrow_at(9)
    body = {
        "resourceType": "Appointment",
        "status": "booked",
        "start": start.isoformat(timespec="seconds"),
        "end": (start + timedelta(minutes=15)).isoformat(timespec="seconds"),
        "slot": [{"reference": "Slot/s-free"}],
        "participant": [{"actor": {"reference": "Practitioner/pr-page"}, "status": "accepted"}],
    }
    api_regulator = Caller(role="regulator", client_id="regulation-sw", user_id=OTHER_REGULATOR)
    await create.create(system(app).acting_for(api_regulator), "Appointment", body)
    lost = await browser.post("/booking?slot=s-free", data={**form, **FILLED})
    assert lost.status_code == 409
    assert len(await appointments(app)) == 1


async def test_a_role_that_does_not_book_gets_a_clear_refusal(
    app: FastAPI, browser: httpx.AsyncClient, idp: Idp
) -> None:
    await signed_in(browser, idp, "generaliste-modele")  # an admin (FHIR_PERSON_ROLES)
    page = await browser.get("/booking", params={"slot": "s-free"})
    assert page.status_code == 403
    assert "ne permet pas de prendre rendez-vous" in unescape(page.text)
    forged = await browser.post("/booking?slot=s-free", data=FILLED)
    assert forged.status_code == 403
    assert await appointments(app) == []


async def test_without_sign_in_a_post_books_nothing(
    app: FastAPI, browser: httpx.AsyncClient
) -> None:
    answer = await browser.post("/booking?slot=s-free", data=FILLED)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/auth/login?")
    assert await appointments(app) == []


async def test_one_form_sent_twice_at_once_books_once(
    app: FastAPI, browser: httpx.AsyncClient, idp: Idp
) -> None:
    await signed_in(browser, idp)
    form = {**(await open_form(browser, "s-free")), **FILLED}
    answers = await asyncio.gather(
        browser.post("/booking?slot=s-free", data=form),
        browser.post("/booking?slot=s-free", data=form),
    )
    assert sorted(a.status_code for a in answers) == [303, 409]
    assert len(await appointments(app)) == 1


async def test_the_form_asks_the_patients_minimal_data_accessibly(
    browser: httpx.AsyncClient, idp: Idp
) -> None:
    await signed_in(browser, idp)
    html = unescape((await browser.get("/booking", params={"slot": "s-free"})).text)
    for field, label, kind, autocomplete in (
        ("family", "Nom", "text", "family-name"),
        ("given", "Prénom", "text", "given-name"),
        ("birth_date", "Date de naissance", "date", "bday"),
        ("phone", "Téléphone", "tel", "tel"),
    ):
        assert f'<label for="{field}">{label}</label>' in html
        tag = re.search(rf'<input type="{kind}" id="{field}" name="{field}"[^>]*>', html, re.S)
        assert tag is not None, field
        assert f'autocomplete="{autocomplete}"' in tag[0] and " required" in tag[0]
    assert '<select id="gender" name="gender" autocomplete="sex"' in html
    assert "<legend>Le patient</legend>" in html
    assert "ne sont pas transmises à la plateforme SAS" in html


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("family", "", "Indiquez le nom du patient."),
        ("family", "   ", "Indiquez le nom du patient."),
        ("family", "D" * 101, "Le nom ne doit pas dépasser 100 caractères."),
        ("given", "", "Indiquez le prénom du patient."),
        ("birth_date", "", "Indiquez la date de naissance du patient."),
        ("birth_date", "2999-01-01", "La date de naissance ne peut pas être dans le futur."),
        ("birth_date", "1987-02-30", "La date de naissance doit être une date complète"),
        ("birth_date", "1987", "La date de naissance doit être une date complète"),
        ("birth_date", "1850-01-01", "trop ancienne"),
        ("phone", "", "Indiquez un numéro de téléphone pour rappeler le patient."),
        ("phone", "12 34", "Le numéro de téléphone n'est pas valide"),
        ("phone", "06 12 34 56 7a", "Le numéro de téléphone n'est pas valide"),
        ("gender", "F", "Choisissez le sexe dans la liste"),
        ("confirm", "", "Cochez cette case"),
    ],
)
async def test_a_missing_or_invalid_field_is_shown_again_with_its_message(
    app: FastAPI, browser: httpx.AsyncClient, idp: Idp, field: str, value: str, message: str
) -> None:
    await signed_in(browser, idp)
    form = await open_form(browser, "s-free")
    sent = {**form, **FILLED, field: value}
    answer = await browser.post("/booking?slot=s-free", data=sent)
    assert answer.status_code == 422, answer.text
    html = unescape(answer.text)
    assert "Le formulaire contient 1 erreur</h2>" in html
    link = re.search(rf'<li><a href="#{field}">([^<]*)</a></li>', html)
    assert link is not None and message in link[1], html
    assert f'id="{field}-erreur"' in html and 'aria-invalid="true"' in html
    for name in ("family", "given", "birth_date", "phone"):  # what was typed is kept
        if name != field:
            assert f'name="{name}" value="{FILLED[name]}"' in html
    if field != "confirm" and value and field != "gender":
        assert f'name="{field}" value="{value}"' in html
    assert form_of(answer.text)["form_id"] == form["form_id"]
    assert await appointments(app) == []
    assert await slot_status(app, "s-free") == "free"


async def test_every_error_is_listed_in_page_order(
    app: FastAPI, browser: httpx.AsyncClient, idp: Idp
) -> None:
    await signed_in(browser, idp)
    form = await open_form(browser, "s-free")
    answer = await browser.post("/booking?slot=s-free", data=form)
    assert answer.status_code == 422
    html = unescape(answer.text)
    assert "Le formulaire contient 5 erreurs" in html
    links = re.findall(r'<li><a href="#(\w+)">', html)
    assert links == ["family", "given", "birth_date", "phone", "confirm"]
    assert await appointments(app) == []


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ({"birth_date": "14/03/1987"}, {"birthDate": "1987-03-14"}),
        (
            {"phone": "+33 6 12 34 56 78"},
            {"telecom": [{"system": "phone", "value": "+33612345678"}]},
        ),
        (
            {"phone": "+44 20 7123 4567"},
            {"telecom": [{"system": "phone", "value": "+442071234567"}]},
        ),
        ({"gender": "female"}, {"gender": "female"}),
        ({"family": "  Martin  "}, {"name": [{"family": "Martin", "given": ["Zoé Anne"]}]}),
    ],
)
async def test_what_is_typed_is_stored_normalised(
    app: FastAPI, browser: httpx.AsyncClient, idp: Idp, typed: dict[str, str], stored: Any
) -> None:
    await signed_in(browser, idp)
    form = await open_form(browser, "s-free")
    answer = await browser.post("/booking?slot=s-free", data={**form, **FILLED, **typed})
    assert answer.status_code == 303, answer.text
    [booked] = await appointments(app)
    patient = booked["contained"][0]
    for key, value in stored.items():
        assert patient[key] == value


async def test_the_form_values_are_never_logged(
    app: FastAPI, browser: httpx.AsyncClient, idp: Idp, caplog: pytest.LogCaptureFixture
) -> None:
    await signed_in(browser, idp)
    with caplog.at_level(logging.DEBUG):
        form = await open_form(browser, "s-free")
        bad = await browser.post("/booking?slot=s-free", data={**form, **FILLED, "phone": "1"})
        assert bad.status_code == 422
        good = await browser.post("/booking?slot=s-free", data={**form, **FILLED})
        assert good.status_code == 303
        await browser.get(good.headers["location"])
    text = caplog.text
    assert "booked from the page" in text and "booking form incomplete" in text
    for value in ("Durand", "Zoé", "1987", "06 12", "+336", "612345678"):
        assert value not in text, value


async def test_typed_markup_is_shown_as_text_never_as_html(
    app: FastAPI, browser: httpx.AsyncClient, idp: Idp
) -> None:
    await signed_in(browser, idp)
    form = await open_form(browser, "s-free")
    hostile = '"><script>alert(1)</script>'
    sent = {**form, **FILLED, "given": hostile, "phone": ""}
    again = await browser.post("/booking?slot=s-free", data=sent)
    assert again.status_code == 422
    assert "<script>" not in again.text and "&lt;script&gt;" in again.text
    done = await browser.post("/booking?slot=s-free", data={**sent, "phone": FILLED["phone"]})
    assert done.status_code == 303, done.text
    confirmation = await browser.get(done.headers["location"])
    assert "<script>" not in confirmation.text and "&lt;script&gt;" in confirmation.text
    [booked] = await appointments(app)
    assert booked["contained"][0]["name"][0]["given"] == [hostile]
