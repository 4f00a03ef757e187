"""Signed cookies for the server's own web pages: who is signed in, and a login under way.

People sign in with Pro Santé Connect (``api/login.py``); the result lives in a cookie the
server signs (itsdangerous, HMAC-SHA256, timestamped) so any worker process can read it and a
tampered or expired cookie is simply not a session. The cookie is ``HttpOnly`` (no script
reads it), ``Secure`` (``__Host-`` prefix: HTTPS only, no ``Domain``, ``Path=/``) and
``SameSite=Lax``: the SAS platform links regulators to our booking pages from its own site,
a top-level navigation that must carry the session, while cross-site form posts and
sub-requests must not. Forms therefore also carry a CSRF token bound to the session
(``csrf_token``/``csrf_ok``), and the state of a login (``state``, ``nonce``, PKCE verifier,
where to go back) lives in a second short-lived cookie restricted to the callback path.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import structlog
from itsdangerous import BadSignature, URLSafeTimedSerializer

log = structlog.get_logger(__name__)

CALLBACK_PATH = "/auth/callback"
LOGIN_STATE_MAX_AGE = 600  # seconds a user has to complete the IdP's login page
MAX_COOKIE_BYTES = 3800  # browsers keep 4096 bytes per cookie, name and attributes included


@dataclass(frozen=True)
class WebSession:
    """A signed-in professional, as the pages need them."""

    national_id: str  # IdNat_PS: "8" + RPPS or "0" + ADELI
    role: str
    given_name: str | None = None
    family_name: str | None = None
    issuer: str = ""
    id_token: str | None = None  # the end-session hint at logout; never logged
    sid: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    signed_in_at: int = field(default_factory=lambda: int(time.time()))

    @property
    def display_name(self) -> str:
        names = " ".join(n for n in (self.given_name, self.family_name) if n)
        return names or self.national_id


@dataclass(frozen=True)
class PendingLogin:
    """What the callback must find again: the values sent to the IdP and where to return."""

    state: str
    nonce: str
    code_verifier: str
    next_path: str


class Cookies:
    """Reads and writes the two cookies with one key (``FHIR_SESSION_SECRET``)."""

    def __init__(self, secret: str, *, max_age: int, secure: bool = True) -> None:
        self.max_age = max_age
        self.secure = secure
        self._key = secret.encode()
        self._sessions = URLSafeTimedSerializer(secret, salt="sas-fhir-session")
        self._logins = URLSafeTimedSerializer(secret, salt="sas-fhir-login")
        # the __Host- prefix needs Secure; a plain-HTTP development server drops the prefix
        self.session_name = "__Host-sas_session" if secure else "sas_session"
        self.login_name = "__Secure-sas_login" if secure else "sas_login"

    # -- the session -----------------------------------------------------------------------

    def dump_session(self, session: WebSession) -> str:
        value = self._sessions.dumps(asdict(session))
        if len(value) > MAX_COOKIE_BYTES:  # a huge id token: keep the session, drop the hint
            value = self._sessions.dumps(asdict(session) | {"id_token": None})
        return value

    def load_session(self, value: str | None) -> WebSession | None:
        data = self._load(self._sessions, value, self.max_age, "session")
        if data is None:
            return None
        try:
            return WebSession(**data)
        except TypeError:  # signed by us, but by another version of the server
            return None

    def session_attributes(self) -> dict[str, Any]:
        return {
            "key": self.session_name,
            "max_age": self.max_age,
            "path": "/",
            "secure": self.secure,
            "httponly": True,
            "samesite": "lax",
        }

    # -- a login under way -----------------------------------------------------------------

    def dump_login(self, pending: PendingLogin) -> str:
        return self._logins.dumps(asdict(pending))

    def load_login(self, value: str | None) -> PendingLogin | None:
        data = self._load(self._logins, value, LOGIN_STATE_MAX_AGE, "login state")
        if data is None:
            return None
        try:
            return PendingLogin(**data)
        except TypeError:
            return None

    def login_attributes(self) -> dict[str, Any]:
        return {
            "key": self.login_name,
            "max_age": LOGIN_STATE_MAX_AGE,
            "path": CALLBACK_PATH,
            "secure": self.secure,
            "httponly": True,
            "samesite": "lax",  # the IdP's redirect back is a cross-site top-level GET
        }

    # -- CSRF --------------------------------------------------------------------------------

    def csrf_token(self, session: WebSession, form: str) -> str:
        """The token a form of ``session`` carries: bound to the session and to the form, so
        a token seen in one form or one session is worth nothing elsewhere."""
        message = f"{session.sid}:{form}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def csrf_ok(self, session: WebSession, form: str, submitted: str | None) -> bool:
        return submitted is not None and hmac.compare_digest(
            self.csrf_token(session, form), submitted
        )

    @staticmethod
    def _load(
        serializer: URLSafeTimedSerializer, value: str | None, max_age: int, what: str
    ) -> dict[str, Any] | None:
        if not value:
            return None
        if len(value) > MAX_COOKIE_BYTES:
            log.warning("cookie refused", cookie=what, reason="oversized")
            return None
        try:
            data = serializer.loads(value, max_age=max_age)
        except BadSignature as exc:  # includes SignatureExpired
            log.info("cookie refused", cookie=what, reason=type(exc).__name__)
            return None
        return data if isinstance(data, dict) else None


def new_pending_login(state: str, nonce: str, code_verifier: str, next_path: str) -> PendingLogin:
    return PendingLogin(state, nonce, code_verifier, safe_next(next_path))


def safe_next(path: str | None) -> str:
    """Where a login may send the browser back: a path on this server only (an absolute or
    scheme-relative URL would make the login page an open redirect)."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/auth/me"
    if any(ord(c) < 0x20 for c in path):
        return "/auth/me"
    return path
