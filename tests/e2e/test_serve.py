"""End to end: the real ``fhir-server`` command, a real server process on loopback.

Loads the example data set with ``fhir-server load``, serves it with ``fhir-server serve``,
and talks to it over HTTP, including with the example client scripts (fhirpy, fhirclient).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.servers import BIN as BIN
from tests.servers import ROOT as ROOT
from tests.servers import free_port as free_port
from tests.servers import run as run
from tests.servers import serving as serving
from tests.servers import with_packages as with_packages

pytestmark = pytest.mark.e2e


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    env = with_packages(
        {**os.environ, "FHIR_DATABASE_URL": database_url, "FHIR_LOG_LEVEL": "warning"}
    )
    demo = tmp_path / "demo.json"
    assert run([sys.executable, "examples/sas_demo.py", "--out", str(demo)], env).returncode == 0
    if not database_url.startswith("sqlite"):
        migrated = run([str(BIN / "fhir-server"), "migrate"], env)
        assert migrated.returncode == 0, migrated.stderr
    loaded = run([str(BIN / "fhir-server"), "load", str(demo)], env)
    assert loaded.returncode == 0, loaded.stderr
    with serving(env, tmp_path / "server.log") as base:
        yield base, env


def test_served_over_loopback(server: tuple[str, dict[str, str]]) -> None:
    base, _env = server
    with httpx.Client(base_url=base, timeout=10) as c:
        cs = c.get("/metadata").json()
        assert cs["fhirVersion"] == "4.0.1"
        slots = c.get("/Slot", params={"status": "free", "_count": "5"}).json()
        assert slots["total"] > 0 and len(slots["entry"]) == 5
        assert slots["entry"][0]["fullUrl"].startswith(f"{base}/Slot/")
        martin = c.get("/Practitioner/ps-martin")
        assert martin.status_code == 200 and martin.headers["etag"] == 'W/"1"'
        created = c.post(
            "/Slot",
            content=martin.content.replace(b'"Practitioner"', b'"Nope"', 1),
            headers={"Content-Type": "application/fhir+json"},
        )
        assert created.status_code == 400
        assert created.json()["resourceType"] == "OperationOutcome"
        # referential integrity: a Slot of a Schedule that does not exist is refused
        slot = slots["entry"][0]["resource"]
        slot.pop("id")
        slot["schedule"] = {"reference": "Schedule/nope"}
        refused = c.post("/Slot", json=slot, headers={"Content-Type": "application/fhir+json"})
        assert refused.status_code == 400, refused.text
        assert refused.json()["issue"][0]["expression"] == ["Slot.schedule"]


@pytest.mark.parametrize("script", ["fhirpy_client.py", "fhirclient_client.py"])
def test_example_clients(server: tuple[str, dict[str, str]], script: str) -> None:
    base, env = server
    result = run([sys.executable, f"examples/clients/{script}", base], env)
    assert result.returncode == 0, result.stdout + result.stderr


def test_json_logs_one_access_line_per_request(tmp_path: Path) -> None:
    """FHIR_LOG_FORMAT=json: uvicorn's lines and the access line of each request are JSON;
    the access line names the query parameters, never their values."""
    env = with_packages(
        {
            **os.environ,
            "FHIR_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/x.sqlite",
            "FHIR_LOG_FORMAT": "json",
            "FHIR_LOG_LEVEL": "info",
        }
    )
    log = tmp_path / "server.log"
    with serving(env, log) as base:
        rpps = "urn:oid:1.2.250.1.71.4.2.1|810001234567"
        r = httpx.get(f"{base}/Practitioner", params={"identifier": rpps, "_count": "1"})
        assert r.status_code == 200
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is JSON
    assert any(
        r.get("logger") == "uvicorn.error" and "Uvicorn running on" in r["event"] for r in records
    ), lines
    access = [r for r in records if r["event"] == "request" and r["path"] == "/Practitioner"]
    assert len(access) == 1, lines
    assert access[0]["method"] == "GET" and access[0]["status"] == 200
    assert access[0]["params"] == ["identifier", "_count"]
    assert access[0]["client"] == "127.0.0.1" and access[0]["duration_ms"] >= 0
    assert "810001234567" not in log.read_text()


def test_load_reports_bad_files_and_keeps_going(database_url: str, tmp_path: Path) -> None:
    env = with_packages({**os.environ, "FHIR_DATABASE_URL": database_url})
    if not database_url.startswith("sqlite"):
        assert run([str(BIN / "fhir-server"), "migrate"], env).returncode == 0
    good = tmp_path / "good.ndjson"
    good.write_text(
        '{"resourceType":"Practitioner","id":"p1"}\n{"resourceType":"Practitioner","id":"p2"}\n'
    )
    half_bad = tmp_path / "half.ndjson"
    half_bad.write_text(
        '{"resourceType":"Practitioner","id":"p3"}\n{"resourceType":"Slot","start":12}\n'
    )
    broken = tmp_path / "broken.json"
    broken.write_text('{"resourceType": "Practitioner", ')
    result = run([str(BIN / "fhir-server"), "load", str(tmp_path)], env)
    assert result.returncode == 1
    assert "broken.json" in result.stderr and "half.ndjson" in result.stderr
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "fhir-server"), "serve", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                httpx.get(f"{base}/metadata", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        assert httpx.get(f"{base}/Practitioner/p2").status_code == 200
        assert httpx.get(f"{base}/Practitioner/p3").status_code == 404  # its file was skipped whole
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_serve_refuses_other_addresses_without_auth(tmp_path: Path) -> None:
    env = {**os.environ, "FHIR_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/x.sqlite"}
    result = run(
        [str(BIN / "fhir-server"), "serve", "--host", "0.0.0.0", "--port", "1"], env, timeout=60
    )
    assert result.returncode == 2
    assert "refusing" in result.stderr


def test_slot_search_cache_sees_writes_of_another_server(
    server: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    """Two server processes on one database, each with its availability cache: a Slot
    written through one is seen at once by the SAS search of the other."""
    writer, env = server
    with serving(env, tmp_path / "reader.log") as reader, httpx.Client(timeout=10) as c:
        doctor = c.get(f"{reader}/Practitioner", params={"_count": "1"}).json()
        rpps = next(i for i in doctor["entry"][0]["resource"]["identifier"] if "system" in i)
        query = {
            "schedule.actor:Practitioner.identifier": f"{rpps['system']}|{rpps['value']}",
            "start": ["ge2000-01-01", "le2100-01-01"],
            "status": "free",
            "_include": "Slot:schedule",
        }

        def free_ids() -> list[str]:
            bundle = c.get(f"{reader}/Slot", params=query).json()
            return [
                e["resource"]["id"]
                for e in bundle.get("entry", [])
                if e["search"]["mode"] == "match"
            ]

        before = free_ids()
        assert before, "the demo practitioner has free slots"
        slot = c.get(f"{writer}/Slot/{before[0]}").json()
        headers = {"Content-Type": "application/fhir+json"}
        url = f"{writer}/Slot/{slot['id']}"
        # (a SAS slot's status is fixed to "free" by its profile: moving it out of the
        # window is what a vendor does to take it back)
        later = {
            **slot,
            "start": "2101-01-01T10:00:00.000+01:00",
            "end": "2101-01-01T10:15:00.000+01:00",
        }
        moved = c.put(url, json=later, headers=headers)
        assert moved.status_code == 200, moved.text
        assert free_ids() == before[1:]
        again = c.put(url, json=slot, headers=headers)
        assert again.status_code == 200, again.text
        assert free_ids() == before
        assert c.delete(url).status_code in (200, 204)
        assert free_ids() == before[1:]


def test_several_workers_share_the_port_and_come_back(pg_url: str, tmp_path: Path) -> None:
    env = with_packages({**os.environ, "FHIR_DATABASE_URL": pg_url, "FHIR_LOG_LEVEL": "warning"})
    assert run([str(BIN / "fhir-server"), "migrate"], env).returncode == 0
    port = free_port()
    log = (tmp_path / "workers.log").open("wb")
    argv = [str(BIN / "fhir-server"), "serve", "--port", str(port), "--workers", "2"]
    parent = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)

    def children() -> list[int]:
        found = subprocess.run(
            ["pgrep", "-P", str(parent.pid), "-f", "spawn_main"], capture_output=True, text=True
        )
        return [int(p) for p in found.stdout.split()]

    def answering(timeout: float = 1) -> bool:
        try:
            answer = httpx.get(f"http://127.0.0.1:{port}/metadata", timeout=timeout)
            return answer.status_code == 200
        except httpx.TransportError:
            return False

    def answers_within(seconds: float) -> bool:
        # a loaded machine (a worker starting beside the tests) may take more than a second
        deadline = time.monotonic() + seconds
        while not answering(timeout=5):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.3)
        return True

    try:
        deadline = time.monotonic() + 60
        while not (answering() and len(children()) >= 2) and time.monotonic() < deadline:
            time.sleep(0.3)
        workers = children()
        assert len(workers) >= 2, (tmp_path / "workers.log").read_text()
        os.kill(workers[0], signal.SIGKILL)  # a worker dies: another takes its place
        deadline = time.monotonic() + 60
        while workers[0] in children() or len(children()) < len(workers):
            assert time.monotonic() < deadline, "the worker was not replaced"
            time.sleep(0.3)
        assert answers_within(30), (tmp_path / "workers.log").read_text()
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=30) == 0
        assert not answering()
    finally:
        if parent.poll() is None:
            parent.kill()
        log.close()
