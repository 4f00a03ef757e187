"""``$ingest`` on a real ``fhir-server serve`` process over loopback (SQLite and
PostgreSQL): the test-only format is registered in the served process by importing it
before the command runs."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.ingest.simple_format import NAME, feed_json, person, slots
from tests.servers import BIN, python_launch, run, serving, with_packages

pytestmark = pytest.mark.e2e


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
    launch = python_launch("tests.ingest.simple_format")
    with serving(env, tmp_path / "server.log", command=launch) as url:
        yield url


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
