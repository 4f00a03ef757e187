"""The batching audit writer on both engines: batches, drain at close, back-pressure."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest

from fhir_server.app import make_context
from fhir_server.audit.record import Access
from fhir_server.audit.writer import AuditWriter
from fhir_server.interactions.context import Context
from fhir_server.settings import Settings
from fhir_server.storage.port import Store
from tests.api.conftest import PACKAGES


@pytest.fixture
def ctx(store: Store) -> Context:
    return make_context(Settings(validate_profiles=False, package_path=PACKAGES), store)


def access(n: int) -> Access:
    return Access(time.time(), "GET", f"/Slot/s{n}", b"", 200, None, "127.0.0.1", None)


async def stored_events(store: Store) -> list[dict[str, Any]]:
    page = await store.history(
        res_type="AuditEvent", res_id=None, since=None, at=None, count=1000, offset=0
    )
    return [orjson.loads(s.content) for s in page.entries]


async def test_events_are_written_in_batches(
    ctx: Context, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    transactions = 0
    writing = store.writing

    def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal transactions
        transactions += 1
        return writing(*args, **kwargs)

    monkeypatch.setattr(store, "writing", counted)  # the real store, its transactions counted
    writer = AuditWriter(source="test", batch_size=5, interval_ms=20, queue_size=100)
    for n in range(12):  # queued before the writer starts: batches of 5, 5 and 2
        assert writer.offer(access(n))
    writer.start(ctx)
    try:
        async with asyncio.timeout(10):
            await writer.settled()
    finally:
        await writer.close()
    events = await stored_events(store)
    assert len(events) == 12 and writer.written == 12
    assert {e["entity"][0]["what"]["reference"] for e in events} == {
        f"Slot/s{n}" for n in range(12)
    }
    assert transactions == 3


async def test_close_writes_everything_still_queued(ctx: Context, store: Store) -> None:
    writer = AuditWriter(source="test", batch_size=1000, interval_ms=60_000, queue_size=100)
    writer.start(ctx)
    for n in range(50):
        assert writer.offer(access(n))
    await asyncio.sleep(0.05)
    assert await stored_events(store) == []  # still waiting for its interval
    await writer.close()
    assert len(await stored_events(store)) == 50
    assert (writer.written, writer.lost) == (50, 0)


async def test_a_full_queue_makes_requests_wait_and_loses_nothing(
    ctx: Context, store: Store
) -> None:
    writer = AuditWriter(source="test", batch_size=2, interval_ms=10, queue_size=3)
    for n in range(3):
        assert writer.offer(access(n))
    assert not writer.offer(access(3))  # full: the request path falls back to submit
    waiting = [asyncio.create_task(writer.submit(access(n))) for n in range(3, 13)]
    await asyncio.sleep(0.05)
    assert not any(task.done() for task in waiting)  # back-pressure, nothing dropped
    writer.start(ctx)
    async with asyncio.timeout(10):
        await asyncio.gather(*waiting)
        await writer.settled()
    await writer.close()
    assert len(await stored_events(store)) == 13
    assert (writer.waits, writer.lost) == (10, 0)
