"""The websocket channel through a real ``serve`` process: bind, then a ping within a
second of a matching write; a binding refused for a rest-hook or unknown subscription."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.servers import started
from tests.subscriptions.test_e2e import FHIR, book, environment


def websocket_subscription(base: str, channel_type: str = "websocket") -> str:
    channel = {"type": channel_type}
    if channel_type == "rest-hook":
        channel["endpoint"] = "http://127.0.0.1:9/hook"
    body = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "ws",
        "criteria": "Appointment?status=booked",
        "channel": channel,
    }
    r = httpx.post(f"{base}/Subscription", json=body, headers=FHIR, timeout=10)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_bind_then_ping_within_a_second(database_url: str, tmp_path: Path) -> None:
    with started(environment(database_url), tmp_path / "serve.log", "--migrate") as s:
        sub = websocket_subscription(s.base)
        hook = websocket_subscription(s.base, "rest-hook")
        url = s.base.replace("http://", "ws://") + "/$subscription-websocket"

        async def scenario() -> tuple[list[str], str, float]:
            async with connect(url, open_timeout=10) as ws:
                answers = []
                for text in (f"bind {sub}", f"bind {hook}", "bind nope", "hello x"):
                    await ws.send(text)
                    answers.append(str(await asyncio.wait_for(ws.recv(), 5)))
                started_at = time.monotonic()
                await asyncio.to_thread(book, s.base)
                ping = str(await asyncio.wait_for(ws.recv(), 5))
                return answers, ping, time.monotonic() - started_at

        answers, ping, took = asyncio.run(scenario())
    assert answers[0] == f"bound {sub}"
    assert answers[1].startswith(f"error {hook} not a websocket")
    assert answers[2].startswith("error nope")
    assert answers[3].startswith("error")
    assert ping == f"ping {sub}"
    assert took < 1.5
