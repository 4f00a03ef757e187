"""The booking page behind ``Slot.comment``: ``GET/POST <base>/booking?slot=<id>``.

The SAS platform sends a regulator to the URL in a slot's ``comment`` (appending
``&origin=sas``). Not signed in: the web sign-in (``api/login.py``) and back here. Signed
in: the slot (``booking_view.py``) and, for a role the policy lets create Appointments, a
short form: the patient's minimal data (``booking_form.py``) and a confirmation. Its POST
books through the create interaction, the same path as the API's ``POST /Appointment``
(acting for the signed-in person), with ``If-None-Exist`` on the form's one-time
identifier: a form sent twice books once. Every refusal is a French page
with the matching HTTP status, never an OperationOutcome. The form's values are never
logged. See docs/booking-page.md.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import orjson
import structlog
from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from fhir_server.api import booking_form
from fhir_server.api.booking_view import IDNPS_TYPE, RPPS_SYSTEM, SlotView, slot_view
from fhir_server.api.login import LOGIN_PATH, WebLogin, current_session, page, read_form
from fhir_server.api.sessions import WebSession
from fhir_server.booking.patient import PatientData
from fhir_server.core import errors
from fhir_server.core.caller import Caller
from fhir_server.interactions import create, read, search
from fhir_server.interactions.context import Context

log = structlog.get_logger(__name__)
BOOKING_PATH, CONFIRMATION_PATH = "/booking", "/booking/confirmation"
APPOINTMENT_PROFILE = "http://sas.fr/fhir/StructureDefinition/FrAppointmentSAS"
OPERATOR = "http://interopsante.org/fhir/StructureDefinition/FrAppointmentOperator"
FORM_ID_SYSTEM = "urn:ietf:rfc:3986"  # the form's one-time id: urn:uuid:<uuid4>
# meta.tag: where the regulator came from; our own namespace (no SAS system names it), as
# for the identifiers of pulled vendors' slots
ORIGIN_TAG = "urn:sas-fhir-server:booking-origin"
MAX_FORM_BYTES = 4096
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_ORIGIN = re.compile(r"[a-z0-9-]{1,32}")
_FORM_ID = re.compile(r"urn:uuid:[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}")


def router(base_url: Any, web_of: Any, ctx_of: Any) -> APIRouter:
    """The booking routes (arguments as ``login.router``'s)."""
    api = APIRouter()

    @api.get(BOOKING_PATH, include_in_schema=False)
    async def show(request: Request) -> Response:
        signed_in = _signed_in(request, web_of(request))
        if isinstance(signed_in, Response):
            return signed_in
        web, session = signed_in
        slot_id, origin = _slot_param(request), _origin(request)
        if slot_id is None:
            return _message("Créneau introuvable", "Ce lien de réservation est incomplet.", 404)
        log.info("booking page opened", user_id=session.national_id, slot=slot_id, origin=origin)
        ctx = _acting(ctx_of(request), session)
        refused = _may_book(ctx)
        if refused is not None:
            return refused
        view, problem = await _bookable(ctx, slot_id)
        if problem is not None:
            return problem
        assert view is not None
        form_id = f"urn:uuid:{uuid.uuid4()}"
        return _form_page(web, session, view, origin, form_id, {}, {}, 200)

    @api.post(BOOKING_PATH, include_in_schema=False)
    async def book(request: Request) -> Response:
        signed_in = _signed_in(request, web_of(request))
        if isinstance(signed_in, Response):  # nothing is booked without a session: sign
            return signed_in  # in, then look again
        web, session = signed_in
        slot_id = _slot_param(request)
        if slot_id is None:
            return _message("Créneau introuvable", "Ce lien de réservation est incomplet.", 404)
        form = await read_form(request, MAX_FORM_BYTES)
        form_id = form.get("form_id", "")
        token = form.get("csrf")
        if not _FORM_ID.fullmatch(form_id) or not web.cookies.csrf_ok(
            session, _csrf_form(slot_id, form_id), token
        ):
            log.warning("booking refused", user_id=session.national_id, reason="csrf")
            return _message(
                "Réservation refusée",
                "Ce formulaire n'est pas valide (expiré, venu d'une autre session ou d'un autre "
                "site). Aucun rendez-vous n'a été pris. Rouvrez le lien du créneau.",
                403,
                retry=_booking_url(slot_id, None),
            )
        origin = form.get("origin") if _ORIGIN.fullmatch(form.get("origin", "")) else None
        ctx = _acting(ctx_of(request), session)
        refused = _may_book(ctx)
        if refused is not None:
            return refused
        view, problem = await _bookable(ctx, slot_id)
        if problem is not None:
            return await _already_sent(ctx, form_id) or problem
        assert view is not None
        reading = booking_form.read(form, datetime.now(ctx.timezone).date())
        if reading.data is None:  # which fields, not what was typed in them
            log.info(
                "booking form incomplete",
                user_id=session.national_id,
                slot=slot_id,
                fields=sorted(reading.errors),
            )
            return _form_page(
                web, session, view, origin, form_id, reading.values, reading.errors, 422
            )
        body = appointment(view, session, form_id, origin, reading.data)
        try:
            result = await create.create(
                ctx, "Appointment", body, if_none_exist=f"identifier={FORM_ID_SYSTEM}|{form_id}"
            )
        except errors.FhirError as exc:
            log.info("booking failed", user_id=session.national_id, slot=slot_id, status=exc.status)
            return _failure(exc, slot_id)
        appointment_id = result.stored.res_id
        if not result.created:
            return _sent_twice(appointment_id)
        log.info(
            "booked from the page",
            user_id=session.national_id,
            slot=slot_id,
            appointment=appointment_id,
            origin=origin,
        )
        target = f"{CONFIRMATION_PATH}?{urlencode({'appointment': appointment_id})}"
        return RedirectResponse(target, status_code=303)  # a reload shows, never re-sends

    @api.get(CONFIRMATION_PATH, include_in_schema=False)
    async def confirmation(request: Request) -> Response:
        signed_in = _signed_in(request, web_of(request))
        if isinstance(signed_in, Response):
            return signed_in
        _, session = signed_in
        appointment_id = request.query_params.get("appointment", "")
        if not _ID.fullmatch(appointment_id):
            return _message("Rendez-vous introuvable", "Ce rendez-vous n'existe pas.", 404)
        ctx = _acting(ctx_of(request), session)
        try:
            stored = await read.read(ctx, "Appointment", appointment_id)
        except errors.FhirError:
            return _message("Rendez-vous introuvable", "Ce rendez-vous n'existe pas.", 404)
        return page(
            "booking_done.html",
            title="Rendez-vous confirmé",
            reference=f"Appointment/{stored.res_id}",
            patient=booking_form.display_name(orjson.loads(stored.content)),
            base=base_url(request),
        )

    return api


def appointment(
    view: SlotView,
    session: WebSession,
    form_id: str,
    origin: str | None,
    patient: PatientData,
) -> dict[str, Any]:
    """The FrAppointmentSAS the page books: the regulator as operator, the slot's times and
    practitioner, and the patient's minimal data as the one contained Patient (for the
    practitioner; the SAS platform never receives it: ``delivery/sas.py``)."""
    meta: dict[str, Any] = {"profile": [APPOINTMENT_PROFILE]}
    if origin:
        meta["tag"] = [{"system": ORIGIN_TAG, "code": origin}]
    return {
        "resourceType": "Appointment",
        "meta": meta,
        "extension": [
            {
                "url": OPERATOR,
                "valueReference": {
                    "identifier": {
                        "type": {"coding": [IDNPS_TYPE]},
                        "system": RPPS_SYSTEM,
                        "value": session.national_id,
                    }
                },
            }
        ],
        "contained": [patient.resource()],
        "identifier": [{"system": FORM_ID_SYSTEM, "value": form_id}],
        "status": "booked",
        "start": view.start_text,
        "end": view.end_text,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "slot": [{"reference": f"Slot/{view.slot_id}"}],
        "participant": [*(dict(p) for p in view.participants), patient.participant()],
    }


def _acting(ctx: Context, session: WebSession) -> Context:
    return ctx.acting_for(Caller(role=session.role, user_id=session.national_id))


def _may_book(ctx: Context) -> HTMLResponse | None:
    if ctx.policy.may_book_on_page(ctx.caller):
        return None
    return _message(
        "Réservation non autorisée",
        f"Votre rôle ({ctx.caller.role}) ne permet pas de prendre rendez-vous sur ce "
        "service. Seuls les régulateurs du SAS réservent des créneaux.",
        403,
    )


async def _bookable(ctx: Context, slot_id: str) -> tuple[SlotView | None, HTMLResponse | None]:
    """The slot, or the page saying why it cannot be booked."""
    try:
        view = await slot_view(ctx, slot_id)
    except errors.FhirError as exc:
        return None, _failure(exc, slot_id)
    if not view.is_free:
        return None, _taken()
    if view.is_past(datetime.now(UTC)):
        return None, _past()
    return view, None


def _failure(exc: errors.FhirError, slot_id: str) -> HTMLResponse:
    """A refused booking as the regulator reads it (the OperationOutcome stays in the log)."""
    if exc.status == 404:
        return _message(
            "Créneau introuvable",
            "Ce créneau n'existe pas ou ne vous est pas visible. Aucun rendez-vous n'a été pris.",
            404,
        )
    if exc.status == 410:
        return _message(
            "Créneau supprimé",
            "Ce créneau a été retiré par le professionnel. Aucun rendez-vous n'a été pris.",
            410,
        )
    if exc.status in (409, 412):
        return _taken()
    if exc.status == 403:
        return _message("Réservation non autorisée", "Vous ne pouvez pas réserver ce créneau.", 403)
    return _message(
        "Réservation impossible",
        "Le rendez-vous n'a pas pu être enregistré. Aucun rendez-vous n'a été pris. "
        "Réessayez ou choisissez un autre créneau.",
        exc.status if 400 <= exc.status < 600 else 500,
        retry=_booking_url(slot_id, None),
    )


def _taken() -> HTMLResponse:
    return _message(
        "Créneau déjà pris",
        "Ce créneau vient d'être réservé par quelqu'un d'autre. Aucun rendez-vous n'a été "
        "pris pour vous : choisissez un autre créneau sur la plateforme SAS.",
        409,
    )


def _past() -> HTMLResponse:
    return _message(
        "Créneau passé",
        "Ce créneau est déjà commencé ou passé. Aucun rendez-vous n'a été pris.",
        410,
    )


async def _already_sent(ctx: Context, form_id: str) -> HTMLResponse | None:
    """The same form sent again after its booking (the slot is busy now: by itself)."""
    if not _FORM_ID.fullmatch(form_id):
        return None
    pairs = [("identifier", f"{FORM_ID_SYSTEM}|{form_id}")]
    result = await search.search(ctx, search.SearchRequest("Appointment", pairs, "", False))
    for entry in orjson.loads(result.body).get("entry", []):
        return _sent_twice(str(entry["resource"]["id"]))
    return None


def _sent_twice(appointment_id: str) -> HTMLResponse:
    return _message(
        "Formulaire déjà envoyé",
        f"Ce formulaire a déjà servi : le rendez-vous Appointment/{appointment_id} est "
        "enregistré. Aucun autre rendez-vous n'a été pris.",
        409,
    )


def _form_page(
    web: WebLogin,
    session: WebSession,
    view: SlotView,
    origin: str | None,
    form_id: str,
    values: dict[str, str],
    field_errors: dict[str, str],
    status: int,
) -> HTMLResponse:
    return page(
        "booking.html",
        status,
        title="Réserver ce créneau" if not field_errors else "Erreur : réserver ce créneau",
        slot=view,
        session=session,
        action=_booking_url(view.slot_id, None),
        origin=origin,
        form_id=form_id,
        csrf=web.cookies.csrf_token(session, _csrf_form(view.slot_id, form_id)),
        values=values,
        errors=field_errors,
    )


def _message(title: str, message: str, status: int, *, retry: str | None = None) -> HTMLResponse:
    return page("booking_message.html", status, title=title, message=message, retry=retry)


def _not_configured() -> HTMLResponse:
    return _message(
        "Réservation indisponible",
        "La connexion par Pro Santé Connect n'est pas configurée sur ce serveur "
        "(FHIR_PSC_ISSUER) : les réservations en ligne sont fermées.",
        503,
    )


def _signed_in(request: Request, web: WebLogin | None) -> tuple[WebLogin, WebSession] | Response:
    """The web sign-in and the person signed in, or the page to answer instead: not
    configured, or the sign-in (then back to this very URL)."""
    if web is None:
        return _not_configured()
    session = current_session(request, web)
    if session is None:
        return _to_login(request)
    return web, session


def _to_login(request: Request) -> RedirectResponse:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"{LOGIN_PATH}?{urlencode({'next': here})}", status_code=303)


def _slot_param(request: Request) -> str | None:
    value = request.query_params.get("slot", "")
    return value if _ID.fullmatch(value) else None


def _origin(request: Request) -> str | None:
    value = request.query_params.get("origin", "")
    return value if _ORIGIN.fullmatch(value) else None


def _booking_url(slot_id: str, origin: str | None) -> str:
    query = {"slot": slot_id} | ({"origin": origin} if origin else {})
    return f"{BOOKING_PATH}?{urlencode(query)}"


def _csrf_form(slot_id: str, form_id: str) -> str:
    return f"booking:{slot_id}:{form_id}"
