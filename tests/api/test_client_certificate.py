"""Where a request's client certificate comes from (api/client_certificate.py): the ASGI TLS
extension, or a trusted proxy's headers, never headers from anyone else."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from auth import devcerts
from fhir_server.api.client_certificate import presented

PROXIES = ["10.0.0.0/24"]
HEADER = "X-SSL-Client-Cert"


@pytest.fixture(scope="module")
def cert() -> devcerts.Issued:
    return devcerts.client_cert(devcerts.new_ca(), "plateforme-sas", "SAS")


def tls_scope(*pems: str, error: str | None = None) -> dict[str, Any]:
    chain = list(pems)
    return {"extensions": {"tls": {"client_cert_chain": chain, "client_cert_error": error}}}


def test_from_the_tls_extension(cert: devcerts.Issued) -> None:
    leaf = cert.cert_pem().decode()
    found = presented(tls_scope(leaf, "ignored root"), {}, "127.0.0.1", PROXIES)
    assert found is not None and found.verified and found.chain_length == 2
    assert found.leaf_der == cert.cert.public_bytes(Encoding.DER)
    assert presented(tls_scope(), {}, "127.0.0.1", PROXIES) is None
    assert presented({}, {}, "127.0.0.1", PROXIES) is None
    failed = presented(tls_scope(leaf, error="bad"), {}, "127.0.0.1", PROXIES)
    assert failed is not None and not failed.verified


def headers(cert: devcerts.Issued, verdict: str = "SUCCESS") -> dict[str, str]:
    return {HEADER: quote(cert.cert_pem().decode()), "X-SSL-Client-Verify": verdict}


def test_from_a_trusted_proxy(cert: devcerts.Issued) -> None:
    found = presented({}, headers(cert), "10.0.0.7", PROXIES, cert_header=HEADER)
    assert found is not None and found.verified
    assert found.leaf_der == cert.cert.public_bytes(Encoding.DER)
    failed = presented(
        {}, headers(cert, "FAILED:certificate revoked"), "10.0.0.7", PROXIES, cert_header=HEADER
    )
    assert failed is not None and not failed.verified
    assert failed.problem == "certificate revoked"
    none = presented({}, {"X-SSL-Client-Verify": "NONE"}, "10.0.0.7", PROXIES, cert_header=HEADER)
    assert none is None
    garbage = presented(
        {},
        {HEADER: "garbage", "X-SSL-Client-Verify": "SUCCESS"},
        "10.0.0.7",
        PROXIES,
        cert_header=HEADER,
    )
    assert garbage is not None and not garbage.verified


def test_headers_from_anyone_else_are_ignored(cert: devcerts.Issued) -> None:
    assert presented({}, headers(cert), "10.0.1.7", PROXIES, cert_header=HEADER) is None
    # ... and without proxy mode, even from a trusted proxy
    assert presented({}, headers(cert), "10.0.0.7", PROXIES) is None
    # a direct client's own TLS certificate still counts
    own = presented(
        tls_scope(cert.cert_pem().decode()), headers(cert), "10.0.1.7", PROXIES, cert_header=HEADER
    )
    assert own is not None and own.chain_length == 1
