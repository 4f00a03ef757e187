"""A real ``fhir-server serve`` process refuses bodies nested thousands of levels deep with a
400 OperationOutcome, stores nothing, and keeps answering."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_serve import BIN, run, serving, with_packages

pytestmark = pytest.mark.e2e
FHIR = {"Content-Type": "application/fhir+json"}
SLOT = (
    b'{"resourceType":"Slot","schedule":{"reference":"Schedule/s"},"status":"free",'
    b'"start":"2026-06-12T16:20:00+02:00","end":"2026-06-12T16:40:00+02:00","extension":[EXT]}'
)


def nested_slot(levels: int) -> bytes:
    url = b'"url":"http://example.org/nested"'
    inner = b"{" + url + b',"valueString":"x"}'
    return SLOT.replace(b"EXT", (b"{" + url + b',"extension":[') * levels + inner + b"]}" * levels)


@pytest.fixture
def empty_server(database_url: str, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    env = with_packages(  # no audit trail: its AuditEvents would be in /_history's total
        {
            **os.environ,
            "FHIR_DATABASE_URL": database_url,
            "FHIR_LOG_LEVEL": "warning",
            "FHIR_AUDIT": "false",
        }
    )
    if not database_url.startswith("sqlite"):
        migrated = run([str(BIN / "fhir-server"), "migrate"], env)
        assert migrated.returncode == 0, migrated.stderr
    log = tmp_path / "server.log"
    with serving(env, log) as base:
        yield base, log


def test_deep_bodies_are_refused_and_the_server_keeps_serving(
    empty_server: tuple[str, Path],
) -> None:
    base, log = empty_server
    with httpx.Client(base_url=base, timeout=30) as c:
        for levels in (5000, 500):  # 500: parsed by orjson, too deep for the recursive walks
            body = nested_slot(levels)
            bundle = b'{"resourceType":"Bundle","type":"transaction","entry":[{"request":'
            bundle += b'{"method":"POST","url":"Slot"},"resource":' + body + b"}]}"
            for path, content in (("/Slot", body), ("/", bundle), ("/Slot/$validate", body)):
                r = c.post(path, content=content, headers=FHIR)
                assert r.status_code == 400, (path, levels, r.text)
                issue = r.json()["issue"][0]
                assert issue["code"] == "too-costly" and "100 levels" in issue["diagnostics"]
        assert c.get("/metadata").status_code == 200
        assert c.get("/Slot", params={"_summary": "count"}).json()["total"] == 0
        assert c.get("/_history").json()["total"] == 0
        schedule = {"resourceType": "Schedule", "id": "s", "actor": [{"display": "Dr A"}]}
        assert c.put("/Schedule/s", json=schedule, headers=FHIR).status_code == 201
        assert c.post("/Slot", content=nested_slot(2), headers=FHIR).status_code == 201
    assert "Traceback" not in log.read_text(errors="replace")
