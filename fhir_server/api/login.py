"""Signing in to the server's own web pages with Pro Santé Connect, and out again.

``GET /auth/login?next=/path`` sends the browser to PSC (authorization code + PKCE S256,
``acr_values=eidas1``, state and nonce kept in a signed cookie bound to the callback path);
``GET /auth/callback`` checks the state, exchanges the code, verifies the ID token, reads
userinfo, finds the professional's role (``interactions/accounts.py``) and sets the session
cookie (``api/sessions.py``); ``POST /auth/logout`` (CSRF token required) clears it and
ends the PSC session too. ``GET /auth/me`` shows who is signed in. Every failure is a page
with a clear French message and a way to start again, never a stack trace; nothing about
the failed attempt is kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import structlog
from fastapi import APIRouter, Request
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.responses import HTMLResponse, RedirectResponse, Response

from auth.errors import AuthError
from auth.oidc import LoginRequest, OidcClient
from fhir_server.api.sessions import (
    CALLBACK_PATH,
    Cookies,
    WebSession,
    new_pending_login,
    safe_next,
)
from fhir_server.core.roles import Role
from fhir_server.interactions import accounts

log = structlog.get_logger(__name__)
LOGIN_PATH, LOGOUT_PATH, ME_PATH, LOGGED_OUT_PATH = (
    "/auth/login",
    "/auth/logout",
    "/auth/me",
    "/auth/logged-out",
)
MAX_FORM_BYTES = 8192

_templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
)


@dataclass(frozen=True)
class WebLogin:
    """What the login pages need; built by ``app.py`` when PSC is configured."""

    client: OidcClient
    cookies: Cookies
    person_roles: Mapping[str, Role]


def page(template: str, status: int = 200, **values: Any) -> HTMLResponse:
    html = _templates.get_template(template).render(**values)
    headers = {"Cache-Control": "no-store", "X-Frame-Options": "DENY"}
    return HTMLResponse(html, status_code=status, headers=headers)


def refusal(message: str, status: int, *, next_path: str = ME_PATH) -> HTMLResponse:
    retry = f"{LOGIN_PATH}?{urlencode({'next': safe_next(next_path)})}"
    return page(
        "message.html",
        status,
        title="Connexion impossible",
        message=message,
        error=True,
        retry=retry,
    )


def current_session(request: Request, web: WebLogin | None) -> WebSession | None:
    """The signed-in professional of this request, if its cookie holds."""
    if web is None:
        return None
    return web.cookies.load_session(request.cookies.get(web.cookies.session_name))


def router(base_url: Any, web_of: Any, ctx_of: Any) -> APIRouter:
    """The login routes. ``base_url(request)``, ``web_of(request)`` and ``ctx_of(request)``
    come from ``routes.py`` (the public base, the WebLogin or None, the interactions'
    context), so this module holds no state of its own."""
    api = APIRouter()

    def not_configured() -> HTMLResponse:
        return page(
            "message.html",
            503,
            title="Connexion indisponible",
            message="La connexion par Pro Santé Connect n'est pas configurée sur ce serveur "
            "(FHIR_PSC_ISSUER).",
            error=True,
        )

    @api.get(LOGIN_PATH, include_in_schema=False)
    async def login(request: Request) -> Response:
        web: WebLogin | None = web_of(request)
        if web is None:
            return not_configured()
        next_path = safe_next(request.query_params.get("next"))
        redirect_uri = base_url(request) + CALLBACK_PATH
        try:
            started = await web.client.start_login(redirect_uri)
        except AuthError as exc:
            log.warning("login could not start", reason=exc.reason)
            return page(
                "message.html",
                503,
                title="Connexion indisponible",
                error=True,
                message="Pro Santé Connect ne répond pas pour le moment. Réessayez dans "
                "quelques instants.",
            )
        pending = new_pending_login(started.state, started.nonce, started.code_verifier, next_path)
        response = RedirectResponse(started.url, status_code=303)
        response.set_cookie(value=web.cookies.dump_login(pending), **web.cookies.login_attributes())
        return response

    @api.get(CALLBACK_PATH, include_in_schema=False)
    async def callback(request: Request) -> Response:
        web: WebLogin | None = web_of(request)
        if web is None:
            return not_configured()
        pending = web.cookies.load_login(request.cookies.get(web.cookies.login_name))
        params = request.query_params
        if pending is None:
            return _forget_login(
                web,
                refusal(
                    "Votre tentative de connexion a expiré ou n'a pas été "
                    "commencée ici. Recommencez la connexion.",
                    400,
                ),
            )
        if "error" in params:  # the user cancelled at PSC, or PSC refused
            log.info("login refused by the identity provider", error=params.get("error"))
            return _forget_login(
                web,
                refusal(
                    "Pro Santé Connect n'a pas confirmé votre identité. Recommencez la connexion.",
                    401,
                    next_path=pending.next_path,
                ),
            )
        code, state = params.get("code"), params.get("state")
        if not code or not state:
            return _forget_login(web, refusal("Réponse de connexion incomplète.", 400))
        expected = LoginRequest(
            url="",
            state=pending.state,
            nonce=pending.nonce,
            code_verifier=pending.code_verifier,
        )
        try:
            result = await web.client.finish_login(
                code=code,
                state=state,
                expected=expected,
                redirect_uri=base_url(request) + CALLBACK_PATH,
            )
        except AuthError as exc:
            log.warning("login failed", reason=exc.reason)
            return _forget_login(
                web,
                refusal("La connexion a échoué : " + exc.reason, 401, next_path=pending.next_path),
            )
        principal = result.principal
        if not principal.national_id:
            return _forget_login(
                web,
                refusal(
                    "Pro Santé Connect n'a pas transmis votre identifiant national.",
                    403,
                    next_path=pending.next_path,
                ),
            )
        role = await accounts.person_role(ctx_of(request), principal.national_id, web.person_roles)
        if role is None:
            log.info("login without an account", user_id=principal.national_id)
            return _forget_login(
                web,
                page(
                    "message.html",
                    403,
                    title="Accès refusé",
                    error=True,
                    message="Votre identité est confirmée, mais vous n'avez pas de compte "
                    "régulateur actif sur ce service. Contactez la plateforme SAS.",
                ),
            )
        session = WebSession(
            national_id=principal.national_id,
            role=role,
            given_name=principal.given_name,
            family_name=principal.family_name,
            issuer=principal.issuer,
            id_token=result.id_token,
        )
        log.info("signed in", user_id=session.national_id, role=role)
        response = _forget_login(web, RedirectResponse(pending.next_path, status_code=303))
        response.set_cookie(
            value=web.cookies.dump_session(session), **web.cookies.session_attributes()
        )
        return response

    @api.get(ME_PATH, include_in_schema=False)
    async def me(request: Request) -> Response:
        web: WebLogin | None = web_of(request)
        session = current_session(request, web)
        if web is None:
            return not_configured()
        if session is None:
            return RedirectResponse(f"{LOGIN_PATH}?{urlencode({'next': ME_PATH})}", 303)
        return page(
            "me.html",
            title="Votre session",
            session=session,
            logout_path=LOGOUT_PATH,
            csrf=web.cookies.csrf_token(session, "logout"),
        )

    @api.post(LOGOUT_PATH, include_in_schema=False)
    async def logout(request: Request) -> Response:
        web: WebLogin | None = web_of(request)
        if web is None:
            return not_configured()
        session = current_session(request, web)
        if session is None:
            return RedirectResponse(LOGGED_OUT_PATH, status_code=303)
        form = await read_form(request)
        if not web.cookies.csrf_ok(session, "logout", form.get("csrf")):
            log.warning("logout refused", user_id=session.national_id, reason="csrf")
            return page(
                "message.html",
                403,
                title="Déconnexion refusée",
                error=True,
                message="Ce formulaire n'est plus valide. Rechargez la page et recommencez.",
            )
        log.info("signed out", user_id=session.national_id)
        try:
            target = await web.client.end_session_url(
                session.id_token, base_url(request) + LOGGED_OUT_PATH, None
            )
        except AuthError:
            target = LOGGED_OUT_PATH  # the local session ends anyway
        response = RedirectResponse(target, status_code=303)
        response.delete_cookie(
            web.cookies.session_name,
            path="/",
            secure=web.cookies.secure,
            httponly=True,
            samesite="lax",
        )
        return response

    @api.get(LOGGED_OUT_PATH, include_in_schema=False)
    async def logged_out() -> Response:
        return page("message.html", title="Déconnecté", message="Vous êtes déconnecté(e).")

    return api


def _forget_login(web: WebLogin, response: Response) -> Response:
    response.delete_cookie(
        web.cookies.login_name,
        path=CALLBACK_PATH,
        secure=web.cookies.secure,
        httponly=True,
        samesite="lax",
    )
    return response


async def read_form(request: Request, limit: int = MAX_FORM_BYTES) -> dict[str, str]:
    """A small urlencoded form (the pages' forms carry a few fields): a body over ``limit``
    bytes, or not UTF-8, is no form of ours (empty)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return {}
    try:
        return dict(parse_qsl(body.decode(), keep_blank_values=True))
    except UnicodeDecodeError:
        return {}
