"""The trust rules of mutual TLS (auth/certificates.py) on certificates made by devcerts."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from auth import devcerts
from auth.certificates import (
    CertificateRefused,
    CertificateRule,
    CertificateTrust,
    PresentedCertificate,
    read_crl_serials,
)

CN, OU = "plateforme-sas", "SAS"
RULES = [CertificateRule(CN, OU, "sas-platform", "platform")]


@pytest.fixture(scope="module")
def ca() -> devcerts.Issued:
    return devcerts.new_ca()


def presented(issued: devcerts.Issued, verified: bool = True) -> PresentedCertificate:
    return PresentedCertificate(
        issued.cert.public_bytes(Encoding.DER), 1 + len(issued.chain), verified
    )


def refusal(trust: CertificateTrust, cert: PresentedCertificate | None) -> CertificateRefused:
    with pytest.raises(CertificateRefused) as caught:
        trust.identify(cert)
    return caught.value


def test_allowed_subject_is_identified(ca: devcerts.Issued) -> None:
    cert = devcerts.client_cert(ca, CN, OU)
    identity = CertificateTrust(RULES).identify(presented(cert))
    assert (identity.client_id, identity.role) == ("sas-platform", "platform")
    assert identity.serial == cert.serial
    assert "CN=plateforme-sas" in identity.subject and "OU=SAS" in identity.subject
    assert len(identity.fingerprint_sha256) == 64


@pytest.mark.parametrize(
    ("cn", "ou"), [("autre", OU), (CN, "AUTRE"), (CN, None), ("PLATEFORME-SAS", OU)]
)
def test_subject_not_in_the_allow_list_is_403(ca: devcerts.Issued, cn: str, ou: str | None) -> None:
    refused = refusal(CertificateTrust(RULES), presented(devcerts.client_cert(ca, cn, ou)))
    assert refused.status == 403 and "not an allowed client" in refused.reason


def test_none_or_unverified_is_401(ca: devcerts.Issued) -> None:
    trust = CertificateTrust(RULES)
    assert refusal(trust, None).status == 401
    unverified = presented(devcerts.client_cert(ca, CN, OU), verified=False)
    assert refusal(trust, unverified).status == 401
    assert refusal(trust, PresentedCertificate(b"garbage", 1, True)).status == 401


def test_expired_and_not_yet_valid_are_401(ca: devcerts.Issued) -> None:
    trust = CertificateTrust(RULES)
    expired = refusal(trust, presented(devcerts.expired_client_cert(ca, CN, OU)))
    assert expired.status == 401 and "expired" in expired.reason
    cert = presented(devcerts.client_cert(ca, CN, OU))
    with pytest.raises(CertificateRefused):
        trust.identify(cert, now=datetime.now(UTC) - timedelta(days=2))


def test_chain_too_deep_and_subject_too_large_are_401(ca: devcerts.Issued) -> None:
    trust = CertificateTrust(RULES, max_chain=4, max_subject_bytes=4096)
    deep = devcerts.deep_chain_client_cert(ca, 5, CN, OU)
    assert len(deep.chain) == 5
    assert "chain" in refusal(trust, presented(deep)).reason
    big = devcerts.huge_subject_client_cert(ca, CN, OU, size=8000)
    assert "subject" in refusal(trust, presented(big)).reason
    huge = devcerts.huge_subject_client_cert(ca, CN, OU)  # 1 MB: not even parsed
    assert "larger than" in refusal(trust, presented(huge)).reason


def test_revocation_list_is_reread_when_it_changes(ca: devcerts.Issued, tmp_path: Path) -> None:
    cert = devcerts.client_cert(ca, CN, OU)
    crl = tmp_path / "crl.pem"
    crl.write_bytes(devcerts.crl(ca))
    trust = CertificateTrust(RULES, crl_files=[crl])
    assert trust.identify(presented(cert)).client_id == "sas-platform"
    crl.write_bytes(devcerts.crl(ca, [cert.serial]))
    later = crl.stat().st_mtime_ns + 1_000_000_000  # a coarse file system clock ticks too
    os.utime(crl, ns=(later, later))
    refused = refusal(trust, presented(cert))
    assert refused.status == 401 and "revoked" in refused.reason


def test_unreadable_revocation_list_refuses(ca: devcerts.Issued, tmp_path: Path) -> None:
    trust = CertificateTrust(RULES, crl_files=[tmp_path / "missing.pem"])
    refused = refusal(trust, presented(devcerts.client_cert(ca, CN, OU)))
    assert refused.status == 401 and "revocation list" in refused.reason


def test_crl_files_hold_several_lists_pem_or_der(ca: devcerts.Issued) -> None:
    other = devcerts.new_ca("other")
    both = devcerts.crl(ca, [1, 2]) + devcerts.crl(other, [3])
    assert read_crl_serials(both) == {1, 2, 3}
    der = x509.load_pem_x509_crl(devcerts.crl(ca, [7])).public_bytes(Encoding.DER)
    assert read_crl_serials(der) == {7}


def test_dev_certs_files(tmp_path: Path) -> None:
    files = devcerts.write_dev_certs(tmp_path / "certs")
    assert files.server_key.stat().st_mode & 0o777 == 0o600
    assert all(key.stat().st_mode & 0o777 == 0o600 for _, key in files.clients.values())
    rules = json.loads(files.allow_list.read_text())
    assert {r["role"] for r in rules} == {"platform", "vendor", "regulator"}
    trust = CertificateTrust(
        [CertificateRule(r["cn"], r["ou"], r["client_id"], r["role"]) for r in rules],
        crl_files=[files.crl],
    )
    leaf = x509.load_pem_x509_certificate(files.clients["vendor"][0].read_bytes())
    identity = trust.identify(PresentedCertificate(leaf.public_bytes(Encoding.DER), 1, True))
    assert identity.role == "vendor"
