"""``$ingest`` on a real ``fhir-server serve`` process over loopback (SQLite and
PostgreSQL): the test-only format is registered in the served process by importing it
before the command runs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.e2e.test_serve import ROOT, free_port, run, with_packages
from tests.ingest.simple_format import NAME, feed_json, person, slots

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent
LAUNCH = "import tests.ingest.simple_format; from fhir_server.cli import main; main()"


@pytest.fixture
def base(database_url: str, tmp_path: Path) -> Iterator[str]:
    env = with_packages(
        {
            **os.environ,
            "FHIR_DATABASE_URL": database_url,
            "FHIR_LOG_LEVEL": "warning",
            "FHIR_AUTH": "none",
            "FHIR_DEFAULT_ROLE": "vendor",
            "FHIR_AVAILABILITY_PRELOAD": "false",
        }
    )
    if not database_url.startswith("sqlite"):
        assert run([str(BIN / "fhir-server"), "migrate"], env).returncode == 0
    port = free_port()
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", LAUNCH, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/metadata", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
            assert proc.poll() is None, log.read_text(errors="replace")
        else:
            pytest.fail(f"server did not start:\n{log.read_text(errors='replace')}")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_ingest_over_http(base: str) -> None:
    doc = orjson.dumps(feed_json([person("a", "10000000015", slots("2026-06-12", 3))]))
    url = f"{base}/$ingest?format={NAME}&booking-url=https://rdv.example.org/book"
    headers = {"Content-Type": "application/octet-stream"}
    with httpx.Client(timeout=30) as c:
        first = c.post(url, content=doc, headers=headers)
        assert first.status_code == 200, first.text
        assert "6 created" in first.json()["issue"][0]["diagnostics"]
        second = c.post(url, content=doc, headers=headers)
        assert "6 unchanged" in second.json()["issue"][0]["diagnostics"]
        found = c.get(f"{base}/Slot", params={"status": "free"}).json()
        assert found["total"] == 3
        assert c.post(url, content=b"\xff\xfe", headers=headers).status_code == 400
