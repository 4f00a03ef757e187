"""The client certificate of a request, wherever TLS was terminated.

Two modes (docs/deployment.md):

- the server terminates TLS itself: ``serving.py`` puts the verified chain in the ASGI TLS
  extension (``scope["extensions"]["tls"]["client_cert_chain"]``, PEM, leaf first);
- a reverse proxy (Debian's nginx) terminates TLS and passes the certificate it verified in
  FHIR_CLIENT_CERT_HEADER (``$ssl_client_escaped_cert``) and its verdict in
  FHIR_CLIENT_VERIFY_HEADER (``$ssl_client_verify``). Anyone can send such headers, so they
  count only from a FHIR_TRUSTED_PROXIES address; from anyone else they are ignored (the
  request then has whatever certificate it presented itself: usually none, so 401).
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

import structlog

from auth.certificates import PresentedCertificate
from fhir_server.api.http import trusted_address

log = structlog.get_logger(__name__)

MAX_HEADER_BYTES = 64 * 1024  # an escaped certificate is 2 to 5 KB


def presented(
    scope: Mapping[str, Any],
    headers: Mapping[str, str],
    client_host: str,
    trusted_proxies: list[str],
    *,
    cert_header: str | None = None,
    verify_header: str = "X-SSL-Client-Verify",
) -> PresentedCertificate | None:
    """The certificate the client presented, or None; proxy headers only from a trusted
    proxy when ``cert_header`` is configured."""
    if cert_header is not None:
        value = headers.get(cert_header)
        if trusted_address(client_host, trusted_proxies):
            return _from_proxy(value, headers.get(verify_header, ""))
        if value is not None or verify_header in headers:
            log.warning(
                "client certificate headers from an untrusted address ignored", client=client_host
            )
    return _from_tls(scope)


def _from_proxy(value: str | None, verdict: str) -> PresentedCertificate | None:
    if not value or verdict == "NONE":
        return None
    if len(value) > MAX_HEADER_BYTES:
        return PresentedCertificate(b"\0" * (MAX_HEADER_BYTES + 1), 1, False)
    try:
        der = ssl.PEM_cert_to_DER_cert(unquote(value).strip())
    except ValueError:
        return PresentedCertificate(b"\0", 1, False)  # unreadable: refused as not verified
    # nginx limits the chain itself (ssl_verify_depth); only its verdict is known here
    if verdict == "SUCCESS":
        return PresentedCertificate(der, 1, True)
    problem = verdict.removeprefix("FAILED:")[:200]  # e.g. "certificate revoked"
    return PresentedCertificate(der, 1, False, problem if problem.isprintable() else None)


def _from_tls(scope: Mapping[str, Any]) -> PresentedCertificate | None:
    tls = scope.get("extensions", {}).get("tls") or {}
    chain = tls.get("client_cert_chain") or []
    if not chain:
        return None
    try:
        der = ssl.PEM_cert_to_DER_cert(chain[0])
    except ValueError:
        return PresentedCertificate(b"\0", len(chain), False)
    return PresentedCertificate(der, len(chain), tls.get("client_cert_error") is None)
