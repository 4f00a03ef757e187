"""A real ``fhir-server serve`` process with a 300 s tick (SQLite and PostgreSQL): a rest-hook
notification that failed once is retried when its backoff ends, not at the tick; a
Subscription in error keeps its notification and sends it once the client resumes it."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.servers import started
from tests.subscriptions.receiver import receiving
from tests.subscriptions.test_e2e import FHIR, book, environment, subscribe, subscription

TICK = "300"  # the longest allowed: never fires within a test (its 20 s deadlines); only a
# retry's own timer or a wake can send


def test_a_failed_notification_is_retried_before_the_tick(
    database_url: str, tmp_path: Path
) -> None:
    env = environment(database_url, FHIR_DELIVERY_TICK=TICK, FHIR_DELIVERY_BACKOFF_FIRST="0.5")
    with receiving(script=(500,)) as hook, started(env, tmp_path / "serve.log", "--migrate") as s:
        sub = subscribe(s.base, f"{hook.url}/hook")
        book(s.base)
        hits = hook.wait_for("/hook", 2, timeout=20)  # the deadline, not a speed bound
        assert [h.code for h in hits] == [500, 200]
        assert subscription(s.base, sub)["status"] == "active"


def test_an_errored_subscription_is_notified_once_resumed(
    database_url: str, tmp_path: Path
) -> None:
    env = environment(
        database_url,
        FHIR_DELIVERY_TICK=TICK,
        FHIR_DELIVERY_BACKOFF_FIRST="0.1",
        FHIR_SUBSCRIPTION_FAILURES="2",
    )
    with (
        receiving(script=(500, 500)) as hook,
        started(env, tmp_path / "serve.log", "--migrate") as s,
    ):
        sub = subscribe(s.base, f"{hook.url}/hook")
        book(s.base)
        hook.wait_for("/hook", 2, timeout=20)
        current = subscription(s.base, sub)
        for _ in range(200):  # the error is written just after the second failure
            if current["status"] == "error":
                break
            time.sleep(0.05)
            current = subscription(s.base, sub)
        assert current["status"] == "error" and "HTTP 500" in current["error"]
        assert hook.codes() == [500, 500]  # held: not sent while in error
        resumed = {**current, "status": "requested"}
        r = httpx.put(f"{s.base}/Subscription/{sub}", json=resumed, headers=FHIR, timeout=10)
        assert r.status_code == 200, r.text
        # the held notification leaves at once (the resume wakes the sender)
        assert [h.code for h in hook.wait_for("/hook", 3, timeout=20)] == [500, 500, 200]
        assert subscription(s.base, sub)["status"] == "active"
