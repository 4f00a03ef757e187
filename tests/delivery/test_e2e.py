"""Real ``fhir-server`` processes pushing SAS appointments to a loopback mTLS receiver
(SQLite and PostgreSQL): the push after a write over HTTP, ``$delivery-status``, a
``serve`` killed (SIGKILL) between the commit and the send, several ``deliver``
processes sharing the outbox, and no secret in the logs."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.delivery.appointments import SYSTEM, sas_appointment
from tests.delivery.receiver import Pki, Receiver
from tests.servers import BIN, ROOT, started, with_packages

FHIR = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}


def environment(database_url: str, receiver: Receiver, **extra: str) -> dict[str, str]:
    pki = receiver.pki
    env = {
        **os.environ,
        "FHIR_DATABASE_URL": database_url,
        "FHIR_AUTH": "none",
        "FHIR_DEFAULT_ROLE": "admin",
        "FHIR_AUDIT": "false",
        "FHIR_LOG_FORMAT": "json",
        "FHIR_SAS_APPOINTMENTS_URL": receiver.url,
        "FHIR_SAS_CLIENT_CERT": str(pki.client_cert),
        "FHIR_SAS_CLIENT_KEY": str(pki.client_key),
        "FHIR_SAS_CA_FILE": str(pki.ca),
        "FHIR_SAS_IDENTIFIER_SYSTEM": SYSTEM,
        "FHIR_DELIVERY_TICK": "0.2",
        "FHIR_DELIVERY_TIMEOUT": "2",
        "FHIR_DELIVERY_BACKOFF_FIRST": "0.2",
        "FHIR_DELIVERY_BACKOFF_MAX": "0.5",
        **extra,
    }
    return with_packages(env)


def migrate(env: dict[str, str]) -> None:
    done = subprocess.run(
        [str(BIN / "fhir-server"), "migrate"], env=env, cwd=ROOT, capture_output=True, timeout=120
    )
    assert done.returncode == 0, done.stderr


def status(base: str) -> dict[str, dict[str, Any]]:
    """$delivery-status as {channel: {part: value}}, failed entries under "failed:<id>"."""
    r = httpx.get(f"{base}/$delivery-status", headers=FHIR, timeout=10)
    assert r.status_code == 200, r.text
    found: dict[str, dict[str, Any]] = {}
    for parameter in r.json().get("parameter", []):
        values = {
            p["name"]: next(v for k, v in p.items() if k.startswith("value"))
            for p in parameter["part"]
        }
        name = parameter["name"]
        label = values["channel"] if name == "channel" else f"failed:{values['id']}"
        found[label] = values
    return found


def wait_status(base: str, check: Any, seconds: float = 30) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = status(base)
        if check(found):
            return found
        time.sleep(0.1)
    raise AssertionError(f"status not reached: {status(base)}")


def post(base: str, body: dict[str, Any]) -> str:
    r = httpx.post(f"{base}/Appointment", json=body, headers=FHIR, timeout=10)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def put(base: str, res_id: str, body: dict[str, Any]) -> None:
    r = httpx.put(
        f"{base}/Appointment/{res_id}", json={**body, "id": res_id}, headers=FHIR, timeout=10
    )
    assert r.status_code == 200, r.text


def no_secrets(log: Path, pki: Pki) -> None:
    text = log.read_text(errors="replace")
    assert "PRIVATE KEY" not in text
    assert pki.client_key.read_text().splitlines()[1] not in text
    assert "3999999999/00000001" not in text  # the regulator's identifier: a body's content


def test_a_write_over_http_is_pushed_at_once_and_reported(
    database_url: str, receiver: Receiver, tmp_path: Path
) -> None:
    env = environment(database_url, receiver, FHIR_DELIVERY_TICK="30")  # only a wake is fast
    log = tmp_path / "serve.log"
    with started(env, log, "--migrate") as served:
        res_id = post(served.base, sas_appointment("rdv-e1"))
        (first,) = receiver.wait_for(1, timeout=10)
        put(served.base, res_id, sas_appointment("rdv-e1", status="cancelled"))
        got = receiver.wait_for(2, timeout=10)
        found = wait_status(served.base, lambda s: s.get("sas", {}).get("sent") == 2)
        metadata = httpx.get(f"{served.base}/metadata", headers=FHIR, timeout=10).json()
    assert (first.method, first.body["status"]) == ("POST", "booked")
    assert (got[1].method, got[1].identifier) == ("PUT", f"{SYSTEM}|rdv-e1")
    assert got[1].body["status"] == "cancelled"
    assert found["sas"]["pending"] == 0 and found["sas"]["failed"] == 0
    operations = {o["name"] for o in metadata["rest"][0]["operation"]}
    assert "delivery-status" in operations
    no_secrets(log, receiver.pki)


def test_killed_between_commit_and_send_then_delivered_once_after_restart(
    database_url: str, receiver: Receiver, tmp_path: Path
) -> None:
    receiver.stop()  # the platform is unreachable: the commit happens, the send cannot
    env = environment(database_url, receiver)
    with started(env, tmp_path / "first.log", "--migrate") as served:
        post(served.base, sas_appointment("rdv-crash"))
        wait_status(served.base, lambda s: s.get("sas", {}).get("retrying") == 1)
        served.proc.send_signal(signal.SIGKILL)
        served.proc.wait(timeout=10)
    receiver.start()
    log = tmp_path / "second.log"
    with started(env, log, "--migrate") as served:
        (got,) = receiver.wait_for(1, timeout=30)
        found = wait_status(served.base, lambda s: s.get("sas", {}).get("sent") == 1)
        time.sleep(1.0)  # several ticks: nothing more is sent
        assert len(receiver.received) == 1
    assert got.body["identifier"] == [{"system": SYSTEM, "value": "rdv-crash"}]
    assert found["sas"]["pending"] == 0
    no_secrets(log, receiver.pki)


def test_a_refusal_is_failed_and_shown_in_the_status(
    database_url: str, receiver: Receiver, tmp_path: Path
) -> None:
    receiver.mode = "400"
    env = environment(database_url, receiver)
    with started(env, tmp_path / "serve.log", "--migrate") as served:
        post(served.base, sas_appointment("rdv-400"))
        found = wait_status(served.base, lambda s: s.get("sas", {}).get("failed") == 1)
    assert found["sas"]["lastError"] == "POST HTTP 400: Appointment.identifier: missing"
    (failed,) = [v for k, v in found.items() if k.startswith("failed:")]
    assert failed["status"] == 400 and failed["key"].startswith("Appointment/")
    assert receiver.attempts == 1


def test_several_deliver_processes_share_the_outbox(
    database_url: str, receiver: Receiver, tmp_path: Path
) -> None:
    env = environment(database_url, receiver, FHIR_DELIVERY_IN_SERVE="false")
    migrate(env)
    with started(env, tmp_path / "serve.log", "--migrate") as served:
        for i in range(8):
            res_id = post(served.base, sas_appointment(f"rdv-p{i}"))
            put(served.base, res_id, sas_appointment(f"rdv-p{i}", status="fulfilled"))
    assert receiver.received == []  # FHIR_DELIVERY_IN_SERVE=false: only `deliver` sends
    command = [str(BIN / "fhir-server"), "deliver", "--once"]
    runs = [
        subprocess.Popen(
            command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        for _ in range(3)
    ]
    for run in runs:
        run.communicate(timeout=120)
    last = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, timeout=120)
    assert last.returncode == 0, last.stdout + last.stderr  # nothing left
    got = receiver.received
    assert len(got) == 16
    order: dict[str, list[str]] = {}
    for r in got:
        value = r.body["identifier"][0]["value"]
        order.setdefault(value, []).append(r.body["status"])
    assert all(statuses == ["booked", "fulfilled"] for statuses in order.values())


def test_deliver_without_a_sas_url_says_so(tmp_path: Path) -> None:
    env = {**os.environ, "FHIR_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/x.sqlite"}
    env.pop("FHIR_SAS_APPOINTMENTS_URL", None)
    done = subprocess.run(
        [str(BIN / "fhir-server"), "deliver", "--once"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "FHIR_SAS_APPOINTMENTS_URL" in done.stderr


@pytest.mark.parametrize(
    ("settings", "said"),
    [
        ({"FHIR_SAS_APPOINTMENTS_URL": "http://127.0.0.1:9/"}, "must be an https:// URL"),
        ({"FHIR_SAS_CLIENT_KEY": ""}, "go together"),
        ({"FHIR_SAS_CLIENT_CERT": "/nonexistent/client.pem"}, "cannot set up TLS"),
        ({"FHIR_SAS_CA_FILE": "/nonexistent/ca.pem"}, "cannot set up TLS"),
    ],
)
@pytest.mark.parametrize("command", ["serve", "deliver"])
def test_a_sas_configuration_that_cannot_work_refuses_to_start(
    pki: Pki, tmp_path: Path, settings: dict[str, str], said: str, command: str
) -> None:
    env = {
        **os.environ,
        "FHIR_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/x.sqlite",
        "FHIR_AUTH": "none",
        "FHIR_VALIDATE_PROFILES": "false",
        "FHIR_SAS_APPOINTMENTS_URL": "https://127.0.0.1:9",
        "FHIR_SAS_CLIENT_CERT": str(pki.client_cert),
        "FHIR_SAS_CLIENT_KEY": str(pki.client_key),
        "FHIR_SAS_CA_FILE": str(pki.ca),
        **settings,
    }
    for name, value in settings.items():
        if not value:
            env.pop(name)
    args = ["serve", "--port", "9"] if command == "serve" else ["deliver", "--once"]
    done = subprocess.run(
        [str(BIN / "fhir-server"), *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert said in done.stderr
    assert "PRIVATE KEY" not in done.stderr + done.stdout
