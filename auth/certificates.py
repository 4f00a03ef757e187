"""Which system a client certificate identifies: the trust rules of mutual TLS.

The SAS guide asks for mTLS with IGC-Santé certificates *and* a check of the subject's CN and
OU. The TLS layer (the server's own, or nginx in front) verifies the chain against the CA
bundle and the CRLs it loaded at start; this module decides what a verified certificate may
do. It checks again what can change without a restart or slip past a proxy's configuration:

- the CRL files are re-read when their modification time changes (a revocation takes effect
  on the next request, not at the next restart);
- the validity dates (a long-lived connection outlives its certificate);
- the chain depth and the subject's size (a 50-deep chain or a 1 MB subject is refused
  before anything reads it further);
- the subject against the allow-list: CN + OU name one client identity and role.

Pure: never imports ``fhir_server``; the server turns ``CertificateRefused`` into 401 or 403.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

DEFAULT_MAX_CHAIN = 4  # leaf, intermediate, root, one spare (IGC-Santé: leaf, AC, AC racine)
DEFAULT_MAX_SUBJECT_BYTES = 4096  # real subjects are a few hundred bytes
MAX_CERTIFICATE_BYTES = 64 * 1024  # not parsed past this (real ones: 1 to 3 KB)


@dataclass(frozen=True, slots=True)
class CertificateRule:
    """One allow-list entry: the certificate subject (CN and OU) of one known system."""

    common_name: str
    organizational_unit: str
    client_id: str
    role: str


@dataclass(frozen=True, slots=True)
class PresentedCertificate:
    """What the TLS layer saw: the leaf certificate (DER), how long the chain was, and
    whether the TLS layer (or the trusted proxy) verified it against the CA bundle."""

    leaf_der: bytes
    chain_length: int
    verified: bool
    problem: str | None = None  # why it was not verified, when the TLS layer said


@dataclass(frozen=True, slots=True)
class SystemIdentity:
    client_id: str
    role: str
    subject: str  # RFC 4514 form, for the logs and the audit trail
    serial: int
    fingerprint_sha256: str  # hex


class CertificateRefused(Exception):
    """The certificate does not identify an allowed system: ``status`` 401 (none, invalid,
    expired, revoked, too deep, oversized) or 403 (valid, but not in the allow-list)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class _Crl:
    """One CRL file, re-read when its modification time changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.mtime_ns: int | None = None
        self.revoked: frozenset[int] = frozenset()

    def serials(self) -> frozenset[int]:
        try:
            mtime = os.stat(self.path).st_mtime_ns
        except OSError as exc:
            # A CRL that cannot be read must not let revoked certificates back in.
            raise CertificateRefused(401, f"the revocation list cannot be read: {exc}") from None
        if mtime != self.mtime_ns:
            self.revoked = frozenset(read_crl_serials(self.path.read_bytes()))
            self.mtime_ns = mtime
        return self.revoked


def read_crl_serials(data: bytes) -> set[int]:
    """The revoked serial numbers of every CRL in ``data`` (PEM, several allowed, or DER)."""
    if b"-----BEGIN" not in data:
        return {r.serial_number for r in x509.load_der_x509_crl(data)}
    serials: set[int] = set()
    marker = b"-----BEGIN X509 CRL-----"
    for block in data.split(marker)[1:]:
        crl = x509.load_pem_x509_crl(marker + block)
        serials.update(r.serial_number for r in crl)
    return serials


def _attribute(name: x509.Name, oid: x509.ObjectIdentifier) -> str | None:
    values = name.get_attributes_for_oid(oid)
    if len(values) != 1:  # none, or ambiguous: two CNs never match a rule
        return None
    value = values[0].value
    return value if isinstance(value, str) else None


class CertificateTrust:
    """The allow-list and the revocation lists; ``identify`` maps a presented certificate to
    a ``SystemIdentity`` or raises ``CertificateRefused``."""

    def __init__(
        self,
        rules: Iterable[CertificateRule],
        *,
        crl_files: Sequence[Path] = (),
        max_chain: int = DEFAULT_MAX_CHAIN,
        max_subject_bytes: int = DEFAULT_MAX_SUBJECT_BYTES,
    ) -> None:
        self.rules = {(r.common_name, r.organizational_unit): r for r in rules}
        self.crls = [_Crl(Path(p)) for p in crl_files]
        self.max_chain = max_chain
        self.max_subject_bytes = max_subject_bytes

    def identify(
        self, presented: PresentedCertificate | None, now: datetime | None = None
    ) -> SystemIdentity:
        if presented is None or not presented.leaf_der:
            raise CertificateRefused(401, "no client certificate was presented")
        if not presented.verified:
            why = f": {presented.problem}" if presented.problem else ""
            raise CertificateRefused(
                401, f"the client certificate was not verified by a trusted CA{why}"
            )
        if presented.chain_length > self.max_chain:
            raise CertificateRefused(
                401,
                f"the certificate chain is {presented.chain_length} certificates long; "
                f"at most {self.max_chain} are accepted",
            )
        if len(presented.leaf_der) > MAX_CERTIFICATE_BYTES:
            raise CertificateRefused(
                401, f"the client certificate is larger than {MAX_CERTIFICATE_BYTES} bytes"
            )
        try:
            cert = x509.load_der_x509_certificate(presented.leaf_der)
            subject_bytes = len(cert.subject.public_bytes())
        except ValueError:
            raise CertificateRefused(401, "the client certificate cannot be read") from None
        if subject_bytes > self.max_subject_bytes:
            raise CertificateRefused(
                401,
                f"the certificate subject is {subject_bytes} bytes; the limit is "
                f"{self.max_subject_bytes}",
            )
        now = now or datetime.now(UTC)
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise CertificateRefused(401, "the client certificate is expired or not yet valid")
        for crl in self.crls:
            if cert.serial_number in crl.serials():
                raise CertificateRefused(401, "the client certificate is revoked")
        subject = cert.subject.rfc4514_string()
        cn = _attribute(cert.subject, NameOID.COMMON_NAME)
        ou = _attribute(cert.subject, NameOID.ORGANIZATIONAL_UNIT_NAME)
        rule = self.rules.get((cn or "", ou or ""))
        if rule is None or cn is None or ou is None:
            raise CertificateRefused(
                403, f"the certificate subject {subject} is not an allowed client (CN and OU)"
            )
        return SystemIdentity(
            client_id=rule.client_id,
            role=rule.role,
            subject=subject,
            serial=cert.serial_number,
            fingerprint_sha256=hashlib.sha256(presented.leaf_der).hexdigest(),
        )
