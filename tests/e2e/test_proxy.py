"""Reverse-proxy mode end to end: Debian's nginx terminates TLS and verifies the client
certificate, the server (plain HTTP behind it) takes the certificate from the headers nginx
sets, and only from nginx's address (docs/deployment.md has the same server block).

nginx connects to the app from 127.0.0.2 (``proxy_bind``), the only trusted proxy here, so a
client that talks to the app directly from 127.0.0.1 cannot pass for it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tests.e2e.test_serve import free_port, serving, with_packages
from tests.e2e.tls_support import CLIENTS, Certs, make_certs

pytestmark = pytest.mark.e2e
SEARCH = "/Slot?status=free&_count=1"
PROXY_ADDRESS = "127.0.0.2"

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream fhir {{
        server 127.0.0.1:{app_port};
        keepalive 64;
        keepalive_timeout 10s;
    }}
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate         {certs}/server.pem;
        ssl_certificate_key     {certs}/server.key;
        ssl_protocols           TLSv1.2 TLSv1.3;
        ssl_client_certificate  {certs}/ca.pem;
        ssl_verify_client       optional;
        ssl_verify_depth        2;
        ssl_crl                 {certs}/crl.pem;
        client_header_timeout   10s;
        keepalive_timeout       15s;
        client_max_body_size    5m;
        # Every proxied request carries these: set here, so a header of the same name
        # sent by the client never gets through (empty values are not sent).
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $http_host;
        proxy_set_header X-Forwarded-Proto https;
        proxy_set_header X-Forwarded-Host $http_host;
        proxy_set_header X-SSL-Client-Cert $ssl_client_escaped_cert;
        proxy_set_header X-SSL-Client-Verify $ssl_client_verify;
        proxy_bind {proxy_address};
        # A certificate that fails verification: the API answers (401 OperationOutcome)
        # instead of nginx's own 400 page; it sees X-SSL-Client-Verify: FAILED:...
        error_page 495 = @certificate_error;
        location / {{
            proxy_pass http://fhir;
        }}
        location @certificate_error {{
            proxy_pass http://fhir;
        }}
    }}
}}
"""


def find_nginx() -> str:
    found = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if found is None:
        message = "nginx not found: install Debian's nginx package (scripts/test does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Certs]]:
    """(nginx's https URL, the app's own http URL, the certificates)."""
    nginx = find_nginx()
    tmp = tmp_path_factory.mktemp("proxy")
    certs = make_certs(tmp / "certs")
    env = with_packages(
        {
            **os.environ,
            "FHIR_DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/fhir.sqlite",
            "FHIR_LOG_LEVEL": "warning",
            "FHIR_AUTH": "on",
            "FHIR_CLIENT_CERTIFICATES": json.dumps(CLIENTS),
            "FHIR_CLIENT_CERT_HEADER": "X-SSL-Client-Cert",
            "FHIR_TRUSTED_PROXIES": json.dumps([PROXY_ADDRESS]),
        }
    )
    with serving(env, tmp / "server.log") as app_base:
        port = free_port()
        conf = tmp / "nginx.conf"
        conf.write_text(
            NGINX_CONF.format(
                tmp=tmp,
                port=port,
                certs=certs.directory,
                app_port=app_base.rsplit(":", 1)[1],
                proxy_address=PROXY_ADDRESS,
            )
        )
        log = tmp / "nginx.log"
        proc = subprocess.Popen(
            [nginx, "-p", str(tmp), "-c", str(conf), "-e", str(log)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        base = f"https://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    httpx.get(f"{base}/metadata", verify=certs.client_context(None), timeout=1)
                    break
                except httpx.TransportError:
                    assert proc.poll() is None, log.read_text(errors="replace")
                    time.sleep(0.1)
            else:
                pytest.fail(f"nginx did not start:\n{log.read_text(errors='replace')}")
            yield base, app_base, certs
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_valid_certificate_through_nginx(proxied: tuple[str, str, Certs]) -> None:
    base, _app, certs = proxied
    r = httpx.get(base + SEARCH, verify=certs.client_context("valid"), timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["link"][0]["url"].startswith(f"{base}/Slot?")  # X-Forwarded-* honoured


def test_no_certificate_through_nginx_is_401(proxied: tuple[str, str, Certs]) -> None:
    base, _app, certs = proxied
    r = httpx.get(base + SEARCH, verify=certs.client_context(None), timeout=10)
    assert r.status_code == 401 and r.json()["resourceType"] == "OperationOutcome"
    assert "www-authenticate" in r.headers


def test_bad_subject_through_nginx_is_403(proxied: tuple[str, str, Certs]) -> None:
    base, _app, certs = proxied
    r = httpx.get(base + SEARCH, verify=certs.client_context("bad_ou"), timeout=10)
    assert r.status_code == 403 and r.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize("client", ["revoked", "expired", "self_signed", "deep_chain"])
def test_certificates_nginx_refuses_are_401(proxied: tuple[str, str, Certs], client: str) -> None:
    base, _app, certs = proxied
    r = httpx.get(base + SEARCH, verify=certs.client_context(client), timeout=10)
    assert r.status_code == 401, r.text
    diagnostics = r.json()["issue"][0]["diagnostics"]
    assert diagnostics.startswith("the client certificate was not verified by a trusted CA: ")


def _forged_headers(certs: Certs) -> dict[str, str]:
    """A valid allowed certificate (public data: anyone may have a copy) in the headers."""
    return {
        "X-SSL-Client-Cert": quote(certs.clients["valid"].cert.read_text()),
        "X-SSL-Client-Verify": "SUCCESS",
    }


def test_headers_forged_by_a_direct_client_are_ignored(proxied: tuple[str, str, Certs]) -> None:
    _base, app, certs = proxied
    r = httpx.get(app + SEARCH, headers=_forged_headers(certs), timeout=10)
    assert r.status_code == 401, r.text
    assert "present a client certificate" in r.json()["issue"][0]["diagnostics"]


def test_headers_forged_through_nginx_are_replaced(proxied: tuple[str, str, Certs]) -> None:
    base, _app, certs = proxied
    r = httpx.get(
        base + SEARCH, headers=_forged_headers(certs), verify=certs.client_context(None), timeout=10
    )
    assert r.status_code == 401, r.text
