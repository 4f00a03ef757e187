"""A small Pro Santé Connect look-alike served over real loopback HTTP, for the tests of
``auth/tokens.py``, ``auth/jwks.py``, ``auth/oidc.py`` and ``auth/introspection.py``.

It is a test double on purpose (the full dev IdP lives in ``auth/dev_idp``): every endpoint
counts its calls and the tests can rotate keys, forge tokens and choose the userinfo format,
so each bad input of the issue can be produced exactly. Paths follow PSC/Keycloak:
``{issuer}/.well-known/wallet-openid-configuration``, ``{issuer}/protocol/openid-connect/…``
and the authorization endpoint on its own path (PSC's wallet host).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

import uvicorn
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

REALM = "/auth/realms/esante-wallet"
OIDC = REALM + "/protocol/openid-connect"
PrivateKey = RSAKey | ECKey

NATIONAL_ID = "810002345678"
USERINFO = {
    "SubjectNameID": NATIONAL_ID,
    "preferred_username": NATIONAL_ID,
    "given_name": "Jeanne",
    "family_name": "MARTIN",
    "SubjectRole": ["10^1.2.250.1.213.1.1.5.5"],
    "SubjectOrganization": "CABINET MARTIN",
    "Secteur_Activite": ["SA07^1.2.250.1.71.4.2.9"],
    "otherIds": [{"identifiant": "10002345678", "origine": "RPPS", "qualite": 1}],
    "SubjectRefPro": {
        "codeCivilite": "MME",
        "exercices": [
            {
                "codeProfession": "10",
                "codeCategorieProfessionnelle": "C",
                "codeCiviliteDExercice": "DR",
                "nomDExercice": "MARTIN",
                "prenomDExercice": "Jeanne",
                "codeTypeSavoirFaire": "S",
                "codeSavoirFaire": "SM54",
                "activities": [
                    {
                        "codeModeExercice": "L",
                        "codeSecteurDActivite": "SA07",
                        "codeRole": "",
                        "numeroSiretSite": "12345678901234",
                        "numeroFinessSite": "",
                        "identifiantTechniqueDeLaStructure": "R10000000123456",
                        "raisonSocialeSite": "CABINET MARTIN",
                    }
                ],
            }
        ],
    },
}


def rsa_key(kid: str | None = None) -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": kid or uuid.uuid4().hex, "use": "sig"})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def s256(verifier: str) -> str:
    return b64(hashlib.sha256(verifier.encode()).digest())


@dataclass
class Grant:
    client_id: str
    redirect_uri: str
    challenge: str
    nonce: str
    used: bool = False


@dataclass
class Client:
    secret: str | None = None
    public_jwk: dict[str, Any] | None = None  # private_key_jwt


@dataclass
class StubIdp:
    """State of the stub; ``issuer`` is set once the server listens."""

    keys: list[PrivateKey] = field(default_factory=lambda: [rsa_key("key-1")])
    issuer: str = ""
    counts: Counter[str] = field(default_factory=Counter)
    clients: dict[str, Client] = field(default_factory=dict)
    grants: dict[str, Grant] = field(default_factory=dict)
    access_tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    userinfo: dict[str, Any] = field(default_factory=lambda: json.loads(json.dumps(USERINFO)))
    userinfo_format: str = "json"  # or "jwt"
    subject: str = "f3a1c2d4-0000-4000-8000-000000000001"
    acr: str | None = "eidas1"
    discovery_path: str = "/.well-known/wallet-openid-configuration"
    extra_jwks: list[dict[str, Any]] = field(default_factory=list)  # published as they are
    jwks_status: int = 200
    id_token_extra: dict[str, Any] = field(default_factory=dict)  # or a callable of the access

    # ---- what the tests call -------------------------------------------------------------
    @property
    def key(self) -> PrivateKey:
        return self.keys[-1]

    def rotate(self, kid: str, *, keep_old: bool = False) -> PrivateKey:
        new = rsa_key(kid)
        self.keys = [*self.keys, new] if keep_old else [new]
        return new

    def sign(
        self,
        claims: dict[str, Any],
        *,
        key: PrivateKey | None = None,
        header: dict[str, Any] | None = None,
    ) -> str:
        key = key or self.key
        alg = "ES256" if isinstance(key, ECKey) else "RS256"
        full = {"alg": alg, "kid": key.kid, **(header or {})}
        return jwt.encode(full, claims, key, algorithms=[full["alg"]])

    def access_claims(self, client_id: str = "sas-regulation", **extra: Any) -> dict[str, Any]:
        """Claims shaped like a PSC access token: no ``aud``, the client in ``azp``."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "exp": now + 120,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "iss": self.issuer,
            "sub": self.subject,
            "typ": "Bearer",
            "azp": client_id,
            "session_state": uuid.uuid4().hex,
            "acr": self.acr,
            "scope": "openid scope_all",
            "preferred_username": NATIONAL_ID,
        }
        claims.update(extra)
        return {k: v for k, v in claims.items() if v is not None}

    def access_token(self, client_id: str = "sas-regulation", **extra: Any) -> str:
        claims = self.access_claims(client_id, **extra)
        token = self.sign(claims)
        self.access_tokens[token] = claims
        return token

    def id_token(self, client_id: str, nonce: str | None, **extra: Any) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "exp": now + 120,
            "iat": now,
            "iss": self.issuer,
            "aud": client_id,
            "sub": self.subject,
            "typ": "ID",
            "azp": client_id,
            "nonce": nonce,
            "acr": self.acr,
            "preferred_username": NATIONAL_ID,
        }
        claims.update(extra)
        return self.sign({k: v for k, v in claims.items() if v is not None})

    def jwks(self) -> dict[str, Any]:
        return {"keys": [k.as_dict(private=False) for k in self.keys]}

    # ---- the HTTP side ---------------------------------------------------------------------
    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route(REALM + self.discovery_path, self._discovery),
                Route(OIDC + "/certs", self._certs),
                Route("/wallet/auth", self._authorize),
                Route(OIDC + "/token", self._token, methods=["POST"]),
                Route(OIDC + "/userinfo", self._userinfo),
                Route(OIDC + "/token/introspect", self._introspect, methods=["POST"]),
            ]
        )

    async def _discovery(self, request: Request) -> Response:
        self.counts["discovery"] += 1
        base = self.issuer.removesuffix(REALM)
        return JSONResponse(
            {
                "issuer": self.issuer,
                "authorization_endpoint": base + "/wallet/auth",
                "token_endpoint": self.issuer + "/protocol/openid-connect/token",
                "userinfo_endpoint": self.issuer + "/protocol/openid-connect/userinfo",
                "introspection_endpoint": self.issuer + "/protocol/openid-connect/token/introspect",
                "end_session_endpoint": self.issuer + "/protocol/openid-connect/logout",
                "jwks_uri": self.issuer + "/protocol/openid-connect/certs",
                "response_types_supported": ["code"],
                "code_challenge_methods_supported": ["S256"],
                "acr_values_supported": ["eidas1"],
            }
        )

    async def _certs(self, request: Request) -> Response:
        self.counts["jwks"] += 1
        if self.jwks_status != 200:
            return JSONResponse({"error": "unavailable"}, status_code=self.jwks_status)
        return JSONResponse({"keys": self.jwks()["keys"] + self.extra_jwks})

    async def _authorize(self, request: Request) -> Response:
        """Signs the configured professional in at once (the browser step of the tests)."""
        self.counts["authorize"] += 1
        q = request.query_params
        ok = (
            q.get("response_type") == "code"
            and q.get("client_id") in self.clients
            and q.get("code_challenge_method") == "S256"
            and q.get("acr_values") == "eidas1"
            and "openid" in q.get("scope", "").split()
            and q.get("nonce")
            and q.get("state")
            and q.get("code_challenge")
        )
        if not ok:
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        code = secrets.token_urlsafe(24)
        self.grants[code] = Grant(
            q["client_id"], q["redirect_uri"], q["code_challenge"], q["nonce"]
        )
        target = q["redirect_uri"] + "?" + urlencode({"code": code, "state": q["state"]})
        return RedirectResponse(target, status_code=302)

    def _client_of(self, request: Request, form: dict[str, str]) -> str | None:
        """The authenticated client: secret (basic or post) or private_key_jwt."""
        header = request.headers.get("authorization", "")
        if header.startswith("Basic "):
            client_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
            client = self.clients.get(client_id)
            return client_id if client and client.secret == secret else None
        if "client_assertion" in form:
            assertion = form["client_assertion"]
            try:
                unverified = json.loads(base64.urlsafe_b64decode(assertion.split(".")[1] + "=="))
                client = self.clients[unverified["iss"]]
                assert client.public_jwk is not None
                key = (
                    ECKey.import_key(client.public_jwk)
                    if client.public_jwk["kty"] == "EC"
                    else RSAKey.import_key(client.public_jwk)
                )
                token = jwt.decode(assertion, key, algorithms=["RS256", "ES256"])
            except Exception:
                return None
            c = token.claims
            endpoints = {self.issuer, self.issuer + str(request.url.path).removeprefix(REALM)}
            if c.get("sub") != c.get("iss") or c.get("aud") not in endpoints:
                return None
            if c.get("exp", 0) < time.time():
                return None
            return str(c["iss"])
        client_id = form.get("client_id", "")
        client = self.clients.get(client_id)
        if client and client.secret and client.secret == form.get("client_secret"):
            return client_id
        return None

    async def _token(self, request: Request) -> Response:
        self.counts["token"] += 1
        form = dict(parse_qsl((await request.body()).decode()))
        client_id = self._client_of(request, form)
        if client_id is None:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        grant = self.grants.get(form.get("code", ""))
        if form.get("grant_type") != "authorization_code" or grant is None or grant.used:
            return JSONResponse(
                {"error": "invalid_grant", "error_description": "Code not valid"}, 400
            )
        grant.used = True  # single use, even when the rest fails
        if grant.client_id != client_id or grant.redirect_uri != form.get("redirect_uri"):
            return JSONResponse({"error": "invalid_grant"}, 400)
        if s256(form.get("code_verifier", "")) != grant.challenge:
            return JSONResponse(
                {"error": "invalid_grant", "error_description": "PKCE verification failed"},
                400,
            )
        access = self.access_token(client_id)
        extra = {k: v(access) if callable(v) else v for k, v in self.id_token_extra.items()}
        return JSONResponse(
            {
                "access_token": access,
                "token_type": "Bearer",
                "expires_in": 120,
                "id_token": self.id_token(client_id, grant.nonce, **extra),
                "scope": "openid scope_all",
            }
        )

    async def _userinfo(self, request: Request) -> Response:
        self.counts["userinfo"] += 1
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        claims = self.access_tokens.get(token)
        if claims is None:
            return JSONResponse({"error": "invalid_token"}, status_code=401)
        body = {"sub": claims["sub"], **self.userinfo}
        if self.userinfo_format == "jwt":
            signed = self.sign({**body, "iss": self.issuer, "aud": claims["azp"]})
            return Response(signed, media_type="application/jwt")
        return JSONResponse(body)

    async def _introspect(self, request: Request) -> Response:
        self.counts["introspect"] += 1
        form = dict(parse_qsl((await request.body()).decode()))
        if self._client_of(request, form) is None:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        claims = self.access_tokens.get(form.get("token", ""))
        if claims is None or claims["exp"] < time.time():
            return JSONResponse({"active": False})
        return JSONResponse({"active": True, "client_id": claims["azp"], **claims})


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """Runs ``app`` under uvicorn in a thread on a free loopback port; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "stub IdP did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@contextmanager
def running_idp(idp: StubIdp | None = None) -> Iterator[StubIdp]:
    idp = idp or StubIdp()
    with serving(idp.app()) as base:
        idp.issuer = base + REALM
        yield idp
