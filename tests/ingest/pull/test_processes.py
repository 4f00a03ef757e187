"""Pull mode across real processes on one PostgreSQL: three ``fhir-server serve`` polling
the same sources (each poll made by exactly one of them), and a ``fhir-server pull`` killed
with SIGKILL mid-pull (nothing partial stored; its lease expires and another process
completes the pull). The sources are real HTTP servers on loopback."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from fhir_server.ingest.pull.state import PullStates, SourceState
from tests.ingest.pull.feeds import FeedServer, Route, feed_server
from tests.ingest.pull.test_fetch import sas_pages
from tests.ingest.pull.test_scheduler import feed
from tests.ingest.simple_format import NAME
from tests.servers import BIN, ROOT, python_launch, run, started, with_packages

pytestmark = pytest.mark.e2e
LAUNCH = python_launch("tests.ingest.simple_format")


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with feed_server() as s:
        yield s


def environment(pg_url: str, sources: list[dict[str, Any]], tmp_path: Path) -> dict[str, str]:
    path = tmp_path / "sources.json"
    path.write_bytes(orjson.dumps({"sources": sources}))
    env = with_packages(
        {
            **os.environ,
            "FHIR_DATABASE_URL": pg_url,
            "FHIR_AUTH": "none",
            "FHIR_LOG_FORMAT": "json",
            "FHIR_LOG_LEVEL": "info",
            "FHIR_ACCESS_LOG": "false",
            "FHIR_AUDIT": "false",
            "FHIR_AVAILABILITY_PRELOAD": "false",
            "FHIR_PULL_SOURCES": str(path),
            "FHIR_PULL_TICK": "0.2",
            "PYTHONUNBUFFERED": "1",  # log lines readable while the process runs
            "FHIR_PULL_LEASE_MARGIN": "2",
        }
    )
    migrated = run([str(BIN / "fhir-server"), "migrate"], env)
    assert migrated.returncode == 0, migrated.stderr
    return env


def pulled(log: Path) -> list[dict[str, Any]]:
    lines = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            if event.get("event") == "pulled":
                lines.append(event)
    return lines


async def states(pg_url: str) -> dict[str, SourceState]:
    engine = create_async_engine(pg_url)
    try:
        return await PullStates(engine).all()
    finally:
        await engine.dispose()


async def slot_count(pg_url: str) -> int:
    from sqlalchemy import text

    engine = create_async_engine(pg_url)
    try:
        async with engine.connect() as conn:
            found = await conn.execute(
                text("SELECT count(*) FROM resources WHERE res_type = 'Slot' AND NOT deleted")
            )
            return int(found.scalar_one())
    finally:
        await engine.dispose()


def test_three_servers_share_the_sources_each_poll_made_once(
    pg_url: str, server: FeedServer, tmp_path: Path
) -> None:
    names = ["s1", "s2", "s3"]
    sources = []
    for n, name in enumerate(names):
        server.routes[f"/{name}.json"] = Route(feed(2, name, f"1000000{n + 1:03d}15"[:11]))
        sources.append(
            {"name": name, "url": server.url(f"/{name}.json"), "format": NAME, "interval": 2}
        )
    env = environment(pg_url, sources, tmp_path)
    logs = [tmp_path / f"serve{n}.log" for n in range(3)]
    with ExitStack() as stack:
        for log in logs:
            stack.enter_context(started(env, log, command=LAUNCH))
        time.sleep(8)
        stopping = time.monotonic()
    events = [e for log in logs for e in pulled(log)]
    for name in names:
        hits = server.of(f"/{name}.json")
        # one request per round of 2 s: never two processes in the same round
        gaps = [b.at - a.at for a, b in itertools.pairwise(hits)]
        assert len(hits) >= 3 and all(gap >= 1.8 for gap in gaps), gaps
        # every request made by one process's poll, logged when done (a poll in flight
        # at the stop is abandoned, unlogged: its source is fetched again by the next)
        done = len([e for e in events if e["source"] == name])
        assert len([h for h in hits if h.at < stopping - 1]) <= done <= len(hits)
    assert all(e["status"] in ("ingested", "not-modified") for e in events)
    assert asyncio.run(slot_count(pg_url)) == 6


@contextmanager
def pulling(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*LAUNCH, "pull"], env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_for(check: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.02)
    pytest.fail(f"timed out waiting for {what}")


@pytest.mark.parametrize("where", ["mid-body", "between-pages"])
def test_a_process_killed_mid_pull_leaves_nothing_and_another_completes_it(
    pg_url: str, server: FeedServer, tmp_path: Path, where: str
) -> None:
    if where == "mid-body":
        server.routes["/a.json"] = Route(feed(3), drip=True, stall_times=1)
        stalling = "/a.json"
        entry = {"name": "a", "url": server.url("/a.json"), "format": NAME}
        expected = 3
    else:
        page1, page2 = sas_pages(server.base)
        server.routes["/fhir/Slot"] = Route(page1)
        server.routes["/fhir/page2"] = Route(page2, drip=True, stall_times=1)
        stalling = "/fhir/page2"
        entry = {
            "name": "a",
            "url": server.url("/fhir"),
            "format": "sas-fhir",
            "rpps": ["10000000015"],
            "max_pages": 2,
        }
        expected = 2  # the golden searchset's storable slots
    # timeout 1 s, lease margin 2 s: a dead holder frees the source 3 s after its last step
    env = environment(pg_url, [entry | {"timeout": 1, "interval": 600}], tmp_path)
    with pulling(env, tmp_path / "first.log") as first:
        wait_for(lambda: server.count(stalling) == 1, 60, "the first process's request")
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
    held = asyncio.run(states(pg_url))["a"]
    assert held.lease_owner is not None and held.lease_expires is not None
    assert held.last_success is None and held.last_error is None and held.etag is None
    assert asyncio.run(slot_count(pg_url)) == 0  # nothing partial
    with pulling(env, tmp_path / "second.log") as second:
        wait_for(lambda: pulled(tmp_path / "second.log"), 60, "the second process's pull")
        assert second.poll() is None
    after = asyncio.run(states(pg_url))["a"]
    assert after.lease_owner is None and after.failures == 0 and after.slot_count == expected
    assert after.last_success is not None and after.last_success >= held.lease_expires
    assert asyncio.run(slot_count(pg_url)) == expected
    assert server.count(stalling) == 2
    (done,) = pulled(tmp_path / "second.log")
    assert done["status"] == "ingested" and done["slots"] == expected


def test_sigterm_mid_pull_frees_the_source_at_once(
    pg_url: str, server: FeedServer, tmp_path: Path
) -> None:
    server.routes["/a.json"] = Route(feed(3), drip=True)
    entry = {"name": "a", "url": server.url("/a.json"), "format": NAME, "timeout": 30}
    env = environment(pg_url, [entry], tmp_path)
    with pulling(env, tmp_path / "pull.log") as proc:
        wait_for(lambda: server.count("/a.json") == 1, 60, "the request")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    state = asyncio.run(states(pg_url))["a"]
    assert state.lease_owner is None and state.last_success is None and state.etag is None
    assert asyncio.run(slot_count(pg_url)) == 0
