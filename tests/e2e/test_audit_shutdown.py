"""A server stopped with SIGTERM writes the AuditEvents still in memory before it exits.

A real ``fhir-server serve`` (one process, then two workers) on each engine, with an audit
interval far longer than the test: nothing is written until shutdown. N requests, SIGTERM,
a new server on the same database: the N events are there. (Several workers need
PostgreSQL.)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_serve import BIN, run, serving, with_packages

pytestmark = pytest.mark.e2e
N = 40


def test_sigterm_writes_every_queued_event(database_url: str, tmp_path: Path) -> None:
    stop_and_count(database_url, tmp_path, workers=1)


def test_every_worker_writes_its_queued_events(pg_url: str, tmp_path: Path) -> None:
    """Several workers (PostgreSQL only): each has its own writer, each drains it."""
    stop_and_count(pg_url, tmp_path, workers=2)


def stop_and_count(database_url: str, tmp_path: Path, workers: int) -> None:
    env = with_packages(
        {
            **os.environ,
            "FHIR_DATABASE_URL": database_url,
            "FHIR_AUTH": "none",
            "FHIR_LOG_LEVEL": "info",
            "FHIR_LOG_FORMAT": "json",
            "FHIR_AUDIT_INTERVAL_MS": "600000",  # only shutdown writes
            "FHIR_AUDIT_BATCH_SIZE": "1000",
            "FHIR_AVAILABILITY_PRELOAD": "false",
        }
    )
    if not database_url.startswith("sqlite"):
        migrated = run([str(BIN / "fhir-server"), "migrate"], env)
        assert migrated.returncode == 0, migrated.stderr
    log = tmp_path / "first.log"
    with serving(env, log, "--workers", str(workers)) as base, httpx.Client(base_url=base) as c:
        for n in range(N):
            assert c.get(f"/Slot/audit-{n}").status_code == 404
        assert c.get("/AuditEvent", params={"subtype": "read"}).json()["total"] == 0
    # serving() ended with SIGTERM and waited for the exit
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    stopped = [line for line in lines if line["event"] == "audit writer stopped"]
    assert len(stopped) == workers  # each worker drained its own writer
    assert sum(line["written"] for line in stopped) >= N
    assert all(line["lost"] == 0 for line in stopped)

    with serving(env, tmp_path / "second.log") as base, httpx.Client(base_url=base) as c:
        found = c.get("/AuditEvent", params={"subtype": "read", "_count": "1000"}).json()
    assert found["total"] == N
    paths = {e["resource"]["entity"][0]["what"]["reference"] for e in found["entry"]}
    assert paths == {f"Slot/audit-{n}" for n in range(N)}
