"""Throwaway certificates for development and tests: a CA, a server certificate for
loopback, client certificates, a CRL, and the bad ones mutual TLS must refuse.

Never for production: production trusts IGC-Santé (docs/security.md). Keys are EC P-256 so a
test session makes dozens in well under a second. ``write_dev_certs`` is what
``fhir-server dev-certs DIR`` writes.
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

Key = ec.EllipticCurvePrivateKey
VALIDITY = timedelta(days=365)


@dataclass(frozen=True)
class Issued:
    """A certificate, its private key, and the CA certificates above it (nearest first, the
    root excluded: what a client sends after its own certificate)."""

    cert: x509.Certificate
    key: Key
    chain: tuple[x509.Certificate, ...] = ()

    @property
    def serial(self) -> int:
        return self.cert.serial_number

    def cert_pem(self) -> bytes:
        """The certificate then its chain, PEM: what ``load_cert_chain`` reads."""
        return b"".join(pem(c) for c in (self.cert, *self.chain))

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def write(self, cert_path: Path, key_path: Path) -> None:
        cert_path.write_bytes(self.cert_pem())
        write_private(key_path, self.key_pem())


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` readable by its owner only (0600 from the start, not chmod after)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(path, 0o600)  # an existing file keeps its mode through O_CREAT


def _name(cn: str, ou: str | None = None, org: str = "SAS FHIR server (development)") -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)]
    if ou is not None:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou))
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attributes)


def _key() -> Key:
    return ec.generate_private_key(ec.SECP256R1())


def _builder(
    subject: x509.Name, issuer: x509.Name, key: Key, not_before: datetime, not_after: datetime
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)  # clock skew


def new_ca(cn: str = "SAS FHIR development CA", parent: Issued | None = None) -> Issued:
    """A CA certificate: self-signed (a root) or issued by ``parent`` (an intermediate)."""
    key = _key()
    subject = _name(cn)
    start = _now()
    builder = (
        _builder(subject, parent.cert.subject if parent else subject, key, start, start + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    signer = parent.key if parent else key
    if parent is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(parent.key.public_key()), False
        )
    cert = builder.sign(signer, hashes.SHA256())
    return Issued(cert, key, _chain_below(parent) if parent else ())


def _chain_below(ca: Issued) -> tuple[x509.Certificate, ...]:
    """What a holder of a certificate issued by ``ca`` sends after it (never the root)."""
    return () if _is_root(ca) else (ca.cert, *ca.chain)


def load_ca(cert_pem: bytes, key_pem: bytes) -> Issued:
    """A root CA written earlier (``ca.pem`` and ``ca.key``), to issue or revoke more."""
    key = serialization.load_pem_private_key(key_pem, None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("not a development CA key (EC P-256)")
    return Issued(x509.load_pem_x509_certificate(cert_pem), key)


def _is_root(ca: Issued) -> bool:
    return ca.cert.subject == ca.cert.issuer


def _leaf(
    ca: Issued,
    subject: x509.Name,
    usage: x509.ObjectIdentifier,
    *,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    san: Sequence[x509.GeneralName] = (),
) -> Issued:
    key = _key()
    start = not_before or _now()
    builder = (
        _builder(subject, ca.cert.subject, key, start, not_after or start + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), False
        )
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(san)), critical=False)
    return Issued(builder.sign(ca.key, hashes.SHA256()), key, _chain_below(ca))


def server_cert(ca: Issued, hosts: Sequence[str] = ("127.0.0.1", "::1", "localhost")) -> Issued:
    """A TLS server certificate for ``hosts`` (IP addresses or DNS names)."""
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return _leaf(ca, _name(hosts[0]), ExtendedKeyUsageOID.SERVER_AUTH, san=names)


def client_cert(
    ca: Issued,
    cn: str,
    ou: str | None,
    *,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    org: str = "SAS FHIR server (development)",
) -> Issued:
    """A TLS client certificate whose subject holds ``cn`` and ``ou``."""
    return _leaf(
        ca,
        _name(cn, ou, org),
        ExtendedKeyUsageOID.CLIENT_AUTH,
        not_before=not_before,
        not_after=not_after,
    )


def expired_client_cert(ca: Issued, cn: str, ou: str) -> Issued:
    end = _now() - timedelta(days=1)
    return client_cert(ca, cn, ou, not_before=end - timedelta(days=30), not_after=end)


def self_signed_client_cert(cn: str, ou: str) -> Issued:
    """A client certificate no CA vouches for (same subject as a valid one)."""
    key = _key()
    subject = _name(cn, ou)
    start = _now()
    cert = (
        _builder(subject, subject, key, start, start + VALIDITY)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert, key)


def deep_chain_client_cert(ca: Issued, depth: int, cn: str, ou: str) -> Issued:
    """A client certificate under ``depth`` intermediate CAs, all sent by the client."""
    parent = ca
    for i in range(depth):
        parent = new_ca(f"intermediate {i + 1}", parent)
    return client_cert(parent, cn, ou)


def huge_subject_client_cert(ca: Issued, cn: str, ou: str, size: int = 1_000_000) -> Issued:
    """A client certificate whose subject is about ``size`` bytes (a huge organization; 1 MB
    by default, just under the 1 MiB OpenSSL reads at most in a name)."""
    return client_cert(ca, cn, ou, org="x" * size)


def crl(ca: Issued, revoked: Sequence[int] = ()) -> bytes:
    """A CRL (PEM) from ``ca`` revoking the ``revoked`` serial numbers."""
    start = _now()
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.cert.subject)
        .last_update(start)
        .next_update(start + timedelta(days=7))
    )
    for serial in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(start).build()
        )
    return builder.sign(ca.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


# The demo systems of `fhir-server dev-certs`: (file stem, CN, OU, client id, role)
DEMO_CLIENTS = (
    ("platform", "plateforme-sas", "SAS", "sas-platform", "platform"),
    ("vendor", "editeur-demo", "EDITEUR", "vendor-demo", "vendor"),
    ("regulator", "regulation-demo", "REGULATION", "regulation-demo", "regulator"),
)


@dataclass(frozen=True)
class DevCertFiles:
    directory: Path
    ca: Path
    server_cert: Path
    server_key: Path
    crl: Path
    allow_list: Path
    clients: dict[str, tuple[Path, Path]]  # stem -> (certificate, key)


def write_dev_certs(
    directory: Path, hosts: Sequence[str] = ("127.0.0.1", "::1", "localhost")
) -> DevCertFiles:
    """Write a development CA, a server certificate for ``hosts``, one client certificate
    per demo system, an empty CRL and the allow-list JSON (FHIR_CLIENT_CERTIFICATES)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = new_ca()
    (directory / "ca.pem").write_bytes(pem(ca.cert))
    write_private(directory / "ca.key", ca.key_pem())  # to revoke or issue more later
    server_cert(ca, hosts).write(directory / "server.pem", directory / "server.key")
    (directory / "crl.pem").write_bytes(crl(ca))
    clients: dict[str, tuple[Path, Path]] = {}
    rules = []
    for stem, cn, ou, client_id, role in DEMO_CLIENTS:
        paths = (directory / f"{stem}.pem", directory / f"{stem}.key")
        client_cert(ca, cn, ou).write(*paths)
        clients[stem] = paths
        rules.append({"cn": cn, "ou": ou, "client_id": client_id, "role": role})
    (directory / "clients.json").write_text(json.dumps(rules, indent=2) + "\n")
    return DevCertFiles(
        directory=directory,
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        crl=directory / "crl.pem",
        allow_list=directory / "clients.json",
        clients=clients,
    )
