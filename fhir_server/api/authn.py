"""Who is calling the FHIR API: request -> ``Caller``, or a 401/403 OperationOutcome.

FHIR_AUTH=none: every request is an anonymous caller of FHIR_DEFAULT_ROLE (loopback only,
``serve`` refuses otherwise). FHIR_AUTH=on (the default), in this order:

- an ``Authorization: Bearer`` token (``bearer.py``): a system's client-credentials token,
  or a person's Pro Santé Connect token (their role from their regulator account);
- else a client certificate (mutual TLS, ``client_certificate.py``), which the allow-list
  maps to a client id and role (``auth.certificates``); an invalid one is 401, a valid one
  that is not in the allow-list 403;
- else 401 with a ``WWW-Authenticate`` challenge.

Session cookies are not credentials for the API: they belong to the server's own pages
(``login.py``), and accepting them here would open the API to cross-site requests.
The caller is also left in ``request.state.caller`` for the audit trail.
"""

from __future__ import annotations

import structlog
from starlette.requests import HTTPConnection

from auth.certificates import CertificateRefused, CertificateRule, CertificateTrust
from fhir_server.api.bearer import BearerTokens, challenge
from fhir_server.api.client_certificate import presented
from fhir_server.core import errors
from fhir_server.core.caller import Caller
from fhir_server.interactions.context import Context
from fhir_server.settings import Settings

log = structlog.get_logger(__name__)

# HTTP requires a challenge with every 401; mutual TLS has no scheme of its own, and bearer
# tokens are the other way in (RFC 6750 error codes are about tokens: none here).
CHALLENGE = 'Bearer realm="fhir"'


def make_trust(settings: Settings) -> CertificateTrust:
    """The allow-list and revocation lists of FHIR_CLIENT_CERTIFICATES / FHIR_TLS_CRL_FILES."""
    return CertificateTrust(
        [CertificateRule(c.cn, c.ou, c.client_id, c.role) for c in settings.client_certificates],
        crl_files=settings.tls_crl_files,
        max_chain=settings.client_cert_max_chain,
    )


class Authenticator:
    def __init__(
        self, settings: Settings, trust: CertificateTrust, bearer: BearerTokens | None = None
    ) -> None:
        self.settings = settings
        self.trust = trust
        self.bearer = bearer  # None: no token issuer configured (FHIR_PSC_ISSUER)
        self.anonymous = Caller(role=settings.default_role)

    async def aclose(self) -> None:
        if self.bearer is not None:
            await self.bearer.aclose()

    async def caller(self, request: HTTPConnection, ctx: Context) -> Caller:
        if self.settings.auth == "none":
            return self.anonymous
        found = await self._identify(request, ctx)
        request.state.caller = found
        return found

    async def _identify(self, request: HTTPConnection, ctx: Context) -> Caller:
        authorization = request.headers.get("authorization")
        if authorization is not None:
            return await self._token(authorization, ctx)
        return self._certificate(request)

    async def _token(self, authorization: str, ctx: Context) -> Caller:
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise errors.unauthorized(
                "the Authorization header must be 'Bearer <access token>'",
                challenge=challenge("invalid_request", "Bearer token expected"),
            )
        if self.bearer is None:
            raise errors.unauthorized(
                "this server accepts no access tokens (no token issuer is configured): "
                "present a client certificate",
                challenge=challenge("invalid_token", "no token issuer configured"),
            )
        return await self.bearer.caller(token, ctx)

    def _certificate(self, request: HTTPConnection) -> Caller:
        settings = self.settings
        cert = presented(
            request.scope,
            request.headers,
            request.client.host if request.client else "",
            settings.trusted_proxies,
            cert_header=settings.client_cert_header,
            verify_header=settings.client_verify_header,
        )
        if cert is None:
            raise errors.unauthorized(
                "authentication is required: present a client certificate or a Bearer access token",
                challenge=CHALLENGE,
            )
        try:
            identity = self.trust.identify(cert)
        except CertificateRefused as refused:
            log.info("client certificate refused", status=refused.status, reason=refused.reason)
            if refused.status == 403:
                raise errors.forbidden(refused.reason) from None
            raise errors.unauthorized(refused.reason, challenge=CHALLENGE) from None
        return Caller(role=identity.role, client_id=identity.client_id)
