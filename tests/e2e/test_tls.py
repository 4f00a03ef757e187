"""Mutual TLS end to end: a real ``fhir-server serve`` over HTTPS with FHIR_AUTH=on, real
handshakes over loopback with certificates made for this test session (tls_support.py).

What the SAS test kit checks (TEST-KIT.md §1): TLS 1.0/1.1 refused; an HTTPS GET without a
client certificate completes at the TLS layer; a valid certificate gets 200 on a Slot
search; a bad CN, a bad OU, a revoked certificate or none gets a handshake error or a 4xx.
Plus what the issue asks: expired, self-signed, a 50-deep chain, a 1 MB subject, and a
thousand idle connections that must not stop the server from answering others.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.e2e.test_serve import BIN, run, with_packages
from tests.e2e.tls_support import (
    Certs,
    Pair,
    make_certs,
    revoke_later,
    tls_env,
    tls_serving,
)

pytestmark = pytest.mark.e2e
SEARCH = "/Slot?status=free&_count=1"
TIMEOUTS = 3  # the server's handshake and keep-alive timeouts here, seconds


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Certs]]:
    tmp = tmp_path_factory.mktemp("tls")
    certs = make_certs(tmp / "certs")
    env = tls_env(
        certs,
        with_packages(
            {
                **os.environ,
                "FHIR_DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/fhir.sqlite",
                "FHIR_LOG_LEVEL": "warning",
                "FHIR_TLS_HANDSHAKE_TIMEOUT": str(TIMEOUTS),
                "FHIR_KEEP_ALIVE_TIMEOUT": str(TIMEOUTS),
            }
        ),
    )
    with tls_serving(env, certs, tmp / "server.log") as base:
        yield base, certs


def attempt(base: str, certs: Certs, client: str | None) -> int | str:
    """The status of a Slot search with client certificate ``client``, or "refused" when
    the TLS connection fails (the server refused the certificate at the handshake)."""
    try:
        r = httpx.get(base + SEARCH, verify=certs.client_context(client), timeout=10)
    except httpx.TransportError:  # TLS 1.3: the alert comes after the client's handshake
        return "refused"
    if r.status_code >= 400:
        assert r.json()["resourceType"] == "OperationOutcome"
    return r.status_code


def answers(base: str, certs: Certs) -> None:
    """The server still serves a valid client."""
    assert attempt(base, certs, "valid") == 200


def test_valid_certificate_searches(server: tuple[str, Certs]) -> None:
    base, certs = server
    with httpx.Client(base_url=base, verify=certs.client_context("valid"), timeout=10) as c:
        r = c.get(SEARCH)
        assert r.status_code == 200, r.text
        assert r.json()["resourceType"] == "Bundle"
        assert c.get("/metadata").status_code == 200


def test_no_certificate_completes_tls_and_gets_401(server: tuple[str, Certs]) -> None:
    base, certs = server
    r = httpx.get(base + SEARCH, verify=certs.client_context(None), timeout=10)
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    outcome = r.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "client certificate" in outcome["issue"][0]["diagnostics"]
    # the CapabilityStatement stays public
    metadata = httpx.get(base + "/metadata", verify=certs.client_context(None), timeout=10)
    assert metadata.status_code == 200


@pytest.mark.parametrize("client", ["bad_cn", "bad_ou"])
def test_subject_outside_the_allow_list_is_403(server: tuple[str, Certs], client: str) -> None:
    base, certs = server
    r = httpx.get(base + SEARCH, verify=certs.client_context(client), timeout=10)
    assert r.status_code == 403
    assert "not an allowed client" in r.json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize("client", ["revoked", "expired", "self_signed"])
def test_invalid_certificates_are_refused(server: tuple[str, Certs], client: str) -> None:
    base, certs = server
    assert attempt(base, certs, client) in ("refused", 401)
    answers(base, certs)


def test_revocation_takes_effect_without_restart(server: tuple[str, Certs]) -> None:
    """The TLS layer read the CRL at start; the application re-reads it when it changes."""
    base, certs = server
    assert attempt(base, certs, "later_revoked") == 200
    revoke_later(certs)
    r = httpx.get(base + SEARCH, verify=certs.client_context("later_revoked"), timeout=10)
    assert r.status_code == 401
    assert "revoked" in r.json()["issue"][0]["diagnostics"]
    answers(base, certs)


@pytest.mark.parametrize("client", ["deep_chain", "huge_subject"])
def test_hostile_certificates_are_refused_and_the_server_goes_on(
    server: tuple[str, Certs], client: str
) -> None:
    base, certs = server
    assert attempt(base, certs, client) in ("refused", 401)
    answers(base, certs)


def _address(base: str) -> tuple[str, int]:
    parts = urlsplit(base)
    assert parts.hostname and parts.port
    return parts.hostname, parts.port


def _get_over(tls: ssl.SSLSocket) -> bytes:
    tls.sendall(f"GET {SEARCH} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    received = b""
    while chunk := tls.recv(65536):
        received += chunk
    return received


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_tls_12_and_13_are_accepted(server: tuple[str, Certs], version: ssl.TLSVersion) -> None:
    base, certs = server
    context = certs.client_context("valid")
    context.minimum_version = context.maximum_version = version
    with (
        socket.create_connection(_address(base), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        assert tls.version() == {"TLSv1_2": "TLSv1.2", "TLSv1_3": "TLSv1.3"}[version.name]
        assert _get_over(tls).startswith(b"HTTP/1.1 200 ")


def _old_tls_client(ca: Path, version: ssl.TLSVersion) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(ca)
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this client offer the old versions
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    context.maximum_version = version
    return context


def _permissive_server(certs: Certs) -> tuple[socket.socket, ssl.SSLContext]:
    """A TLS server that still speaks TLS 1.0 and 1.1: proof the client offers them."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs.server.cert, certs.server.key)
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    return socket.create_server(("127.0.0.1", 0)), context


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_tls_10_and_11_are_refused(server: tuple[str, Certs], version: ssl.TLSVersion) -> None:
    base, certs = server
    context = _old_tls_client(certs.ca, version)
    listener, server_context = _permissive_server(certs)
    with listener:
        accepted: list[str | None] = []

        def accept_one() -> None:
            conn, _ = listener.accept()
            with server_context.wrap_socket(conn, server_side=True) as tls:
                accepted.append(tls.version())

        thread = threading.Thread(target=accept_one, daemon=True)
        thread.start()
        with (
            socket.create_connection(listener.getsockname(), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            negotiated = tls.version()
        thread.join(10)
    assert negotiated == accepted[0] == {"TLSv1": "TLSv1", "TLSv1_1": "TLSv1.1"}[version.name]
    with (
        socket.create_connection(_address(base), timeout=10) as raw,
        pytest.raises(ssl.SSLError),
    ):
        context.wrap_socket(raw, server_hostname="127.0.0.1")
    answers(base, certs)


def test_a_thousand_idle_connections_do_not_stop_the_server(server: tuple[str, Certs]) -> None:
    """1,000 TCP connections that never start TLS and 50 that finish the handshake and never
    send a request: another client is answered promptly meanwhile, and the server closes the
    idle ones after its handshake and keep-alive timeouts."""
    base, certs = server
    address = _address(base)
    idle: list[socket.socket] = []
    idle_tls: list[ssl.SSLSocket] = []
    context = certs.client_context("valid")
    try:
        for _ in range(1000):
            idle.append(socket.create_connection(address, timeout=10))
        for _ in range(50):
            raw = socket.create_connection(address, timeout=10)
            idle_tls.append(context.wrap_socket(raw, server_hostname="127.0.0.1"))
        opened = time.monotonic()
        with httpx.Client(base_url=base, verify=context, timeout=5) as c:
            for _ in range(5):
                start = time.monotonic()
                assert c.get(SEARCH).status_code == 200
                assert time.monotonic() - start < 2
        deadline = opened + TIMEOUTS + 10
        for sock in [*idle, *idle_tls]:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            # closed by the server: an end of file, or a reset
            with contextlib.suppress(ConnectionResetError, ssl.SSLEOFError):
                assert sock.recv(1) == b"", "an idle connection was answered"
        answers(base, certs)
    finally:
        for sock in [*idle, *idle_tls]:
            sock.close()


def test_workers_serve_tls_the_same_way(pg_url: str, tmp_path: Path) -> None:
    """Two worker processes: each new connection lands on either (SO_REUSEPORT), and all
    of them get the same TLS, certificate checks and answers (twenty connections all on one
    worker would happen about twice in a million runs)."""
    certs = make_certs(tmp_path / "certs")
    env = tls_env(
        certs,
        with_packages({**os.environ, "FHIR_DATABASE_URL": pg_url, "FHIR_LOG_LEVEL": "warning"}),
    )
    log = tmp_path / "workers.log"
    with tls_serving(env, certs, log, "--migrate", "--workers", "2") as base:
        for _ in range(10):  # a new client, hence a new connection, each time
            assert attempt(base, certs, "valid") == 200
            assert attempt(base, certs, None) == 401
            assert attempt(base, certs, "bad_cn") == 403


def test_serve_refuses_a_tls_setup_that_cannot_work(tmp_path: Path) -> None:
    env = with_packages(
        {
            **os.environ,
            "FHIR_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/fhir.sqlite",
            "FHIR_TLS_CERT_FILE": str(tmp_path / "missing.pem"),
            "FHIR_TLS_KEY_FILE": str(tmp_path / "missing.key"),
        }
    )
    result = run([str(BIN / "fhir-server"), "serve", "--port", "1"], env)
    assert result.returncode == 2
    assert "cannot set up TLS" in result.stderr


def test_dev_certs_command_writes_a_working_setup(tmp_path: Path) -> None:
    """`fhir-server dev-certs DIR`: the files it writes serve mutual TLS as printed."""
    directory = tmp_path / "certs"
    result = run([str(BIN / "fhir-server"), "dev-certs", str(directory)], dict(os.environ))
    assert result.returncode == 0, result.stderr
    assert f"FHIR_TLS_CERT_FILE={directory / 'server.pem'}" in result.stderr
    for key in ("ca.key", "server.key", "platform.key", "vendor.key", "regulator.key"):
        assert (directory / key).stat().st_mode & 0o777 == 0o600, key
    certs = Certs(
        directory,
        directory / "ca.pem",
        Pair(directory / "server.pem", directory / "server.key"),
        directory / "crl.pem",
        {s: Pair(directory / f"{s}.pem", directory / f"{s}.key") for s in ("platform", "vendor")},
        0,
    )
    env = with_packages(
        {
            **tls_env(certs, dict(os.environ)),
            "FHIR_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/fhir.sqlite",
            "FHIR_CLIENT_CERTIFICATES": (directory / "clients.json").read_text(),
        }
    )
    with tls_serving(env, certs, tmp_path / "server.log") as base:
        assert attempt(base, certs, "platform") == 200
        assert attempt(base, certs, "vendor") == 200
        assert attempt(base, certs, None) == 401
