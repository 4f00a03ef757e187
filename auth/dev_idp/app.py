"""The dev IdP as an ASGI app: PSC/Keycloak paths over the Authlib server.

Routes live under the realm path ``/auth/realms/esante-wallet`` like Pro Santé Connect's:
discovery at ``/.well-known/wallet-openid-configuration`` (PSC's name) and the standard
``/.well-known/openid-configuration``; ``/protocol/openid-connect/{auth, token, userinfo,
certs, token/introspect, logout}``. ``POST /dev/rotate`` (loopback callers only) rotates the
signing key. Every handler reads the request fully, then lets Authlib decide.
"""

from __future__ import annotations

import ipaddress
import logging

from authlib.oauth2.rfc6749 import OAuth2Error
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from auth.dev_idp.bridge import BadForm, StarletteOAuth2Request, read_request
from auth.dev_idp.config import REALM_PATH, DevIdpConfig
from auth.dev_idp.fixtures import find_professional
from auth.dev_idp.keys import ALGORITHM, KeyRing
from auth.dev_idp.pages import login_page, message_page
from auth.dev_idp.server import DevAuthorizationServer
from auth.dev_idp.store import Memory
from auth.dev_idp.tokens import ACR, TokenIssuer, serve_issuer

PROTOCOL = f"{REALM_PATH}/protocol/openid-connect"
SUPPORTED_CLAIMS = (
    "sub",
    "iss",
    "acr",
    "azp",
    "nonce",
    "preferred_username",
    "given_name",
    "family_name",
    "SubjectNameID",
    "SubjectOrganization",
    "SubjectRole",
    "Secteur_Activite",
    "otherIds",
    "SubjectRefPro",
)


def create_app(config: DevIdpConfig | None = None) -> Starlette:
    """A dev IdP with ``config`` (default clients, issuer from the served address)."""
    config = config or DevIdpConfig()
    # Authlib logs each issued token at DEBUG ("Issue token %r"): tokens are never logged.
    logging.getLogger("authlib").setLevel(logging.INFO)
    tokens = TokenIssuer(config, KeyRing(config.key_grace), Memory())
    app = Starlette(
        routes=[
            Route(f"{REALM_PATH}/.well-known/wallet-openid-configuration", discovery),
            Route(f"{REALM_PATH}/.well-known/openid-configuration", discovery),
            Route(f"{PROTOCOL}/certs", certs),
            Route(f"{PROTOCOL}/auth", authorize, methods=["GET", "POST"]),
            Route(f"{PROTOCOL}/token", token, methods=["POST"]),
            Route(f"{PROTOCOL}/userinfo", userinfo, methods=["GET", "POST"]),
            Route(f"{PROTOCOL}/token/introspect", introspect, methods=["POST"]),
            Route(f"{PROTOCOL}/logout", logout, methods=["GET", "POST"]),
            Route("/dev/rotate", rotate, methods=["POST"]),
        ]
    )
    app.state.server = DevAuthorizationServer(tokens)
    return app


def rotate_keys(app: Starlette) -> str:
    """Rotate the signing key of an app made by :func:`create_app`; returns the new kid."""
    server: DevAuthorizationServer = app.state.server
    return server.tokens.keys.rotate()


async def _prepare(request: Request) -> tuple[DevAuthorizationServer, StarletteOAuth2Request]:
    serve_issuer(str(request.base_url))
    return request.app.state.server, await read_request(request)


def _bad_form(error: BadForm) -> Response:
    return JSONResponse({"error": "invalid_request", "error_description": str(error)}, 400)


async def discovery(request: Request) -> Response:
    serve_issuer(str(request.base_url))
    server: DevAuthorizationServer = request.app.state.server
    issuer = server.tokens.issuer
    protocol = f"{issuer}/protocol/openid-connect"
    scopes = sorted({"openid", *(s for c in server.tokens.config.clients for s in c.scopes)})
    auth_methods = ["client_secret_basic", "client_secret_post", "private_key_jwt"]
    return JSONResponse(
        {
            "issuer": issuer,
            "authorization_endpoint": f"{protocol}/auth",
            "token_endpoint": f"{protocol}/token",
            "introspection_endpoint": f"{protocol}/token/introspect",
            "userinfo_endpoint": f"{protocol}/userinfo",
            "end_session_endpoint": f"{protocol}/logout",
            "jwks_uri": f"{protocol}/certs",
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "client_credentials"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [ALGORITHM],
            "token_endpoint_auth_methods_supported": [*auth_methods, "none"],
            "token_endpoint_auth_signing_alg_values_supported": [ALGORITHM],
            "introspection_endpoint_auth_methods_supported": auth_methods,
            "code_challenge_methods_supported": ["S256"],
            "acr_values_supported": [ACR],
            "scopes_supported": scopes,
            "claims_supported": list(SUPPORTED_CLAIMS),
            "claims_parameter_supported": False,
            "request_parameter_supported": False,
        }
    )


async def certs(request: Request) -> Response:
    server: DevAuthorizationServer = request.app.state.server
    # not cached: after a rotation, relying parties must see the new key at once
    return JSONResponse(server.tokens.keys.public_jwks(), headers={"Cache-Control": "no-cache"})


async def authorize(request: Request) -> Response:
    """GET: validate the request, show the login page. POST (from that page): validate it
    again and, for the chosen professional, redirect to the client with a code."""
    try:
        server, oauth = await _prepare(request)
    except BadForm as error:
        return message_page("Requête refusée", str(error), 400)
    try:
        grant = server.get_consent_grant(oauth)
    except OAuth2Error as error:
        if error.redirect_uri:  # the client and its redirect URI are known: tell the client
            refused: Response = server.handle_error_response(oauth, error)
            return refused
        reason = error.description or error.error
        return message_page("Requête refusée", f"{error.error}: {reason}", 400)
    if request.method == "GET":
        return login_page(str(request.url.replace(query="")), oauth.payload.data)
    login = oauth.form.get("login", "")
    user = find_professional(login) if login else None
    if login and user is None:
        return message_page("Requête refusée", "professionnel inconnu", 400)
    # no user (the cancel button): Authlib answers access_denied to the client
    response: Response = server.create_authorization_response(oauth, grant_user=user, grant=grant)
    return response


async def token(request: Request) -> Response:
    try:
        server, oauth = await _prepare(request)
    except BadForm as error:
        return _bad_form(error)
    response: Response = server.create_token_response(oauth)
    return response


async def userinfo(request: Request) -> Response:
    try:
        server, oauth = await _prepare(request)
    except BadForm as error:
        return _bad_form(error)
    response: Response = server.create_endpoint_response("userinfo", oauth)
    return response


async def introspect(request: Request) -> Response:
    try:
        server, oauth = await _prepare(request)
    except BadForm as error:
        return _bad_form(error)
    response: Response = server.create_endpoint_response("introspection", oauth)
    return response


async def logout(request: Request) -> Response:
    try:
        server, oauth = await _prepare(request)
    except BadForm as error:
        return message_page("Requête refusée", str(error), 400)
    try:
        ending = server.validate_endpoint_request("end_session", oauth)
    except OAuth2Error as error:
        return message_page("Déconnexion refusée", error.description or error.error, 400)
    response: Response | None = server.create_endpoint_response("end_session", ending)
    return response or message_page("Déconnecté", "Vous êtes déconnecté.")


async def rotate(request: Request) -> Response:
    """Rotate the signing key: loopback callers only (the IdP only listens there anyway)."""
    host = request.client.host if request.client else ""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        return JSONResponse({"error": "forbidden"}, 403)
    return JSONResponse({"kid": rotate_keys(request.app)})
