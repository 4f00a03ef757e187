"""Certificates and HTTPS servers for the mutual TLS end-to-end tests (test_tls, test_proxy).

One throwaway CA per test session (auth.devcerts), with every certificate the tests need
written as PEM files; a ``fhir-server serve`` over TLS started like test_serve.serving does
for plain HTTP.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from auth import devcerts
from auth.certificates import read_crl_serials
from tests.e2e.test_serve import BIN, ROOT, free_port

CN, OU = "plateforme-sas", "SAS"
CLIENTS = [{"cn": CN, "ou": OU, "client_id": "sas-platform", "role": "platform"}]


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Certs:
    directory: Path
    ca: Path
    server: Pair
    crl: Path
    clients: dict[str, Pair]  # valid, bad_cn, bad_ou, revoked, expired, self_signed, ...
    later_revoked_serial: int  # "later": not in the CRL the server starts with

    def client_context(
        self, name: str | None, *, maximum: ssl.TLSVersion | None = None
    ) -> ssl.SSLContext:
        """A client's TLS context trusting the test CA, with client certificate ``name``."""
        context = ssl.create_default_context(cafile=self.ca)
        if maximum is not None:
            context.maximum_version = maximum
        if name is not None:
            pair = self.clients[name]
            context.load_cert_chain(pair.cert, pair.key)
        return context


def make_certs(directory: Path) -> Certs:
    directory.mkdir(parents=True, exist_ok=True)
    ca = devcerts.new_ca()
    (directory / "ca.pem").write_bytes(devcerts.pem(ca.cert))
    server = Pair(directory / "server.pem", directory / "server.key")
    devcerts.server_cert(ca).write(server.cert, server.key)
    issued = {
        "valid": devcerts.client_cert(ca, CN, OU),
        "later_revoked": devcerts.client_cert(ca, CN, OU),
        "bad_cn": devcerts.client_cert(ca, "autre-systeme", OU),
        "bad_ou": devcerts.client_cert(ca, CN, "AUTRE"),
        "revoked": devcerts.client_cert(ca, CN, OU),
        "expired": devcerts.expired_client_cert(ca, CN, OU),
        "self_signed": devcerts.self_signed_client_cert(CN, OU),
        "deep_chain": devcerts.deep_chain_client_cert(ca, 50, CN, OU),
        "huge_subject": devcerts.huge_subject_client_cert(ca, CN, OU),
    }
    clients: dict[str, Pair] = {}
    for name, cert in issued.items():
        clients[name] = Pair(directory / f"{name}.pem", directory / f"{name}.key")
        cert.write(clients[name].cert, clients[name].key)
    crl = directory / "crl.pem"
    crl.write_bytes(devcerts.crl(ca, [issued["revoked"].serial]))
    (directory / "ca.key").write_bytes(ca.key_pem())
    return Certs(
        directory, directory / "ca.pem", server, crl, clients, issued["later_revoked"].serial
    )


def revoke_later(certs: Certs) -> None:
    """Rewrite the CRL with the "later_revoked" certificate in it too (the server is running)."""
    ca = devcerts.load_ca(certs.ca.read_bytes(), (certs.directory / "ca.key").read_bytes())
    revoked = read_crl_serials(certs.crl.read_bytes()) | {certs.later_revoked_serial}
    tmp = certs.crl.with_suffix(".tmp")
    tmp.write_bytes(devcerts.crl(ca, sorted(revoked)))
    os.replace(tmp, certs.crl)  # atomically, as an operator's CRL update should


def tls_env(certs: Certs, base: dict[str, str]) -> dict[str, str]:
    return {
        **base,
        "FHIR_AUTH": "on",
        "FHIR_TLS_CERT_FILE": str(certs.server.cert),
        "FHIR_TLS_KEY_FILE": str(certs.server.key),
        "FHIR_TLS_CLIENT_CA_FILE": str(certs.ca),
        "FHIR_TLS_CRL_FILES": json.dumps([str(certs.crl)]),
        "FHIR_CLIENT_CERTIFICATES": json.dumps(CLIENTS),
    }


@contextmanager
def tls_serving(env: dict[str, str], certs: Certs, log: Path, *extra: str) -> Iterator[str]:
    """A ``fhir-server serve`` over TLS (``extra`` arguments after the port); yields its
    https base URL once it answers."""
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(BIN / "fhir-server"), "serve", "--host", "127.0.0.1", "--port", str(port), *extra],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"https://127.0.0.1:{port}"
    try:
        wait_until_answering(base, certs, proc, log)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def wait_until_answering(base: str, certs: Certs, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            r = httpx.get(f"{base}/metadata", verify=certs.client_context(None), timeout=1)
            if r.status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
        assert proc.poll() is None, log.read_text(errors="replace")
    pytest.fail(f"server did not start in 60 s:\n{log.read_text(errors='replace')}")
