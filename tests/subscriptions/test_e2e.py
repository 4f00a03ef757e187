"""Real ``fhir-server serve`` processes notifying a loopback rest-hook receiver (SQLite and
PostgreSQL): a notification within about a second of the write, a failing and a hanging
endpoint (bounded retries, status=error) beside a healthy one that is still notified, a
notification queued before a kill delivered after the restart, no secret in the logs."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers import BIN, ROOT, started, with_packages
from tests.subscriptions.receiver import Receiver, receiving

FHIR = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
SECRET = "Bearer hook-s3cret-value"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving(hang=30) as r:
        yield r


def environment(database_url: str, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "FHIR_DATABASE_URL": database_url,
        "FHIR_AUTH": "none",
        "FHIR_DEFAULT_ROLE": "admin",
        "FHIR_AUDIT": "false",
        "FHIR_LOG_FORMAT": "json",
        "FHIR_DELIVERY_TICK": "0.2",
        "FHIR_DELIVERY_BACKOFF_FIRST": "0.1",
        "FHIR_DELIVERY_BACKOFF_MAX": "0.2",
        "FHIR_SUBSCRIPTION_TIMEOUT": "1",
        "FHIR_SUBSCRIPTION_FAILURES": "3",
        **extra,
    }
    return with_packages(env)


def subscribe(base: str, endpoint: str, payload: str | None = None) -> str:
    channel: dict[str, Any] = {
        "type": "rest-hook",
        "endpoint": endpoint,
        "header": [f"Authorization: {SECRET}"],
    }
    if payload:
        channel["payload"] = payload
    body = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "e2e",
        "criteria": "Appointment?status=booked",
        "channel": channel,
    }
    r = httpx.post(f"{base}/Subscription", json=body, headers=FHIR, timeout=10)
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "active"
    return str(r.json()["id"])


def book(base: str) -> str:
    body = {
        "resourceType": "Appointment",
        "status": "booked",
        "start": "2026-06-12T16:20:00+02:00",
        "end": "2026-06-12T16:40:00+02:00",
        "participant": [{"actor": {"display": "Dr Lefèvre"}, "status": "accepted"}],
    }
    r = httpx.post(f"{base}/Appointment", json=body, headers=FHIR, timeout=10)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def subscription(base: str, sub_id: str) -> dict[str, Any]:
    r = httpx.get(f"{base}/Subscription/{sub_id}", headers=FHIR, timeout=10)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_rest_hook_notified_within_a_second_failing_ones_go_to_error(
    database_url: str, receiver: Receiver, tmp_path: Path
) -> None:
    log = tmp_path / "serve.log"
    with started(environment(database_url, FHIR_DELIVERY_TICK="5"), log, "--migrate") as s:
        ok = subscribe(s.base, f"{receiver.url}/ok", "application/fhir+json")
        empty = subscribe(s.base, f"{receiver.url}/ok-empty")
        failing = subscribe(s.base, f"{receiver.url}/fail")
        hanging = subscribe(s.base, f"{receiver.url}/hang")
        time.sleep(0.3)  # the hanging endpoint holds its first send from now on
        started_at = time.monotonic()
        first = book(s.base)
        (hit,) = receiver.wait_for("/ok/", 1, timeout=5)
        (bare,) = receiver.wait_for("/ok-empty", 1, timeout=5)
        # within about a second, hanging endpoint or not (bound loose: the machine is shared)
        assert hit.at - started_at < 3
        assert (hit.method, hit.path) == ("PUT", f"/ok/Appointment/{first}")
        assert b'"status":"booked"' in hit.body
        assert hit.headers["Authorization"] == SECRET
        assert (bare.method, bare.body) == ("POST", b"")
        # the failing endpoint: 3 attempts, then status=error; the others unaffected
        # (retries leave at their next_attempt, after the backoff, whatever the 5 s tick)
        deadline = time.monotonic() + 45
        while subscription(s.base, failing)["status"] != "error" and time.monotonic() < deadline:
            time.sleep(0.1)
        failed = subscription(s.base, failing)
        assert failed["status"] == "error" and "HTTP 500" in failed["error"]
        assert len(receiver.of("/fail")) == 3
        second = book(s.base)
        receiver.wait_for("/ok/", 2, timeout=5)
        assert receiver.of("/ok/")[1].path.endswith(second)
        time.sleep(0.5)
        assert len(receiver.of("/fail")) == 3  # in error: never sent again
        assert subscription(s.base, ok)["status"] == "active"
        assert subscription(s.base, empty)["status"] == "active"
        del hanging
    text = log.read_text(errors="replace")
    assert "hook-s3cret-value" not in text


def test_a_notification_queued_before_a_kill_is_delivered_after_the_restart(
    database_url: str, receiver: Receiver, tmp_path: Path
) -> None:
    env = environment(database_url, FHIR_DELIVERY_IN_SERVE="false")  # queue, never send
    with started(env, tmp_path / "first.log", "--migrate") as s:
        subscribe(s.base, f"{receiver.url}/ok")
        book(s.base)
        os.kill(s.proc.pid, signal.SIGKILL)
        s.proc.wait(10)
    assert receiver.of("/ok") == []
    with started(environment(database_url), tmp_path / "second.log"):
        receiver.wait_for("/ok", 1, timeout=10)
        time.sleep(0.5)
    assert len(receiver.of("/ok")) == 1


def test_deliver_without_a_sas_url_sends_the_notifications(
    database_url: str, receiver: Receiver, tmp_path: Path
) -> None:
    env = environment(database_url, FHIR_DELIVERY_IN_SERVE="false")
    env.pop("FHIR_SAS_APPOINTMENTS_URL", None)
    with started(env, tmp_path / "serve.log", "--migrate") as s:
        subscribe(s.base, f"{receiver.url}/ok")
        book(s.base)
    assert receiver.of("/ok") == []
    done = subprocess.run(
        [str(BIN / "fhir-server"), "deliver", "--once"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(receiver.of("/ok")) == 1
