"""Who is calling: request -> ``Caller`` (first version: client certificates).

FHIR_AUTH=none: every request is an anonymous caller of FHIR_DEFAULT_ROLE (loopback only,
``serve`` refuses otherwise). FHIR_AUTH=on: a system identifies itself with a client
certificate (mutual TLS, ``client_certificate.py``), which the allow-list maps to a client
id and role (``auth.certificates``); none or an invalid one is 401, a valid one that is not
in the allow-list 403. Bearer tokens and session cookies come next, here.
"""

from __future__ import annotations

import structlog
from fastapi import Request

from auth.certificates import CertificateRefused, CertificateRule, CertificateTrust
from fhir_server.api.client_certificate import presented
from fhir_server.core import errors
from fhir_server.core.caller import Caller
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
    def __init__(self, settings: Settings, trust: CertificateTrust) -> None:
        self.settings = settings
        self.trust = trust
        self.anonymous = Caller(role=settings.default_role)

    async def caller(self, request: Request) -> Caller:
        settings = self.settings
        if settings.auth == "none":
            return self.anonymous
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
                "authentication is required: present a client certificate", challenge=CHALLENGE
            )
        try:
            identity = self.trust.identify(cert)
        except CertificateRefused as refused:
            log.info("client certificate refused", status=refused.status, reason=refused.reason)
            if refused.status == 403:
                raise errors.forbidden(refused.reason) from None
            raise errors.unauthorized(refused.reason, challenge=CHALLENGE) from None
        return Caller(role=identity.role, client_id=identity.client_id)
