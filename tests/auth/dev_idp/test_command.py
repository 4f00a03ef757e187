"""``fhir-server dev-idp``: the real command, loopback only, with a clients file."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from auth.dev_idp import REALM_PATH
from tests.auth.dev_idp.conftest import free_port

BIN = Path(sys.executable).parent / "fhir-server"


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.1", "::", "example.org"])
def test_non_loopback_hosts_are_refused(host: str) -> None:
    result = subprocess.run(
        [str(BIN), "dev-idp", "--host", host, "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "FHIR_LOG_LEVEL": "warning"},
    )
    assert result.returncode == 2
    assert "loopback only" in result.stderr


def test_a_bad_clients_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "clients.toml"
    path.write_text('[[clients]]\nclient_id = "x"\nflavour = "y"\n')
    result = subprocess.run(
        [str(BIN), "dev-idp", "--clients", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "flavour" in result.stderr


def test_the_command_serves_the_idp_with_its_clients(tmp_path: Path) -> None:
    clients = tmp_path / "clients.toml"
    clients.write_text(
        '[[clients]]\nclient_id = "vendor-x"\nclient_secret = "vx"\n'
        'grant_types = ["client_credentials"]\nscopes = ["system/Slot.write"]\n'
    )
    port = free_port()
    log = tmp_path / "idp.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(BIN), "dev-idp", "--port", str(port), "--clients", str(clients)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "FHIR_LOG_LEVEL": "warning"},
        )
    try:
        issuer = f"http://127.0.0.1:{port}{REALM_PATH}"
        meta = None
        deadline = time.monotonic() + 30
        while meta is None:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            try:
                meta = httpx.get(f"{issuer}/.well-known/wallet-openid-configuration").json()
            except httpx.TransportError:
                time.sleep(0.05)
        assert meta["issuer"] == issuer
        # the issuer is fixed by the command, whatever Host the request names
        other = httpx.get(
            f"{issuer}/.well-known/openid-configuration", headers={"Host": f"localhost:{port}"}
        )
        assert other.json()["issuer"] == issuer
        token = httpx.post(
            meta["token_endpoint"],
            data={"grant_type": "client_credentials"},
            auth=("vendor-x", "vx"),
        )
        assert token.status_code == 200, token.text
        assert token.json()["scope"] == "system/Slot.write"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    printed = log.read_text()
    assert f"issuer: {issuer}" in printed
    assert "vendor-x" in printed
    assert "SubjectNameID 819999000011" in printed
    assert token.json()["access_token"] not in printed  # tokens are never logged
