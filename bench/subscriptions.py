"""The cost of Subscriptions on writes and their notification latency, on PostgreSQL
(docs/subscriptions.md):

1. Appointment creates per second through the write path with 0 and with 20 active
   Subscriptions on Appointment (19 ``Appointment?actor=Practitioner/…`` that never match,
   one ``Appointment?status=booked`` that matches every write), in alternating blocks of
   the same run: the ratio is the matching's cost on a write.
2. Latency from commit to receipt at a loopback rest-hook receiver (Python's threaded HTTP
   server in this process: the figure is a floor), the sender woken by the commit (its
   tick set to 30 s): one appointment at a time, p50 / p99 / max.

A throwaway PostgreSQL cluster (``procs.postgres``); only 127.0.0.1. Printed and appended
to docs/perf.md. A benchmark, not a test; every phase is bounded by its count.

    python bench/subscriptions.py                  # 400 writes per arm, 100 samples
    python bench/subscriptions.py --writes 1000 --samples 200
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import perfdoc
import procs
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the loopback receiver

from fhir_server import logging as fhir_logging  # noqa: E402
from fhir_server.app import make_context, make_store, make_subscription_sender  # noqa: E402
from fhir_server.core.caller import Caller  # noqa: E402
from fhir_server.interactions import create  # noqa: E402
from fhir_server.settings import Settings  # noqa: E402
from fhir_server.subscriptions.matcher import Matcher  # noqa: E402
from tests.subscriptions.receiver import Receiver, receiving  # noqa: E402

BLOCK = 50  # writes per block; the arms alternate block by block
REGULATOR = Caller(role="regulator", client_id="bench-regulation")


def progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()
    )


def appointment() -> dict[str, Any]:
    return {
        "resourceType": "Appointment",
        "status": "booked",
        "start": "2026-06-12T16:20:00+02:00",
        "end": "2026-06-12T16:40:00+02:00",
        "participant": [{"actor": {"display": "Dr Lefèvre"}, "status": "accepted"}],
    }


def subscription(criteria: str, endpoint: str) -> dict[str, Any]:
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "bench",
        "criteria": criteria,
        "channel": {"type": "rest-hook", "endpoint": endpoint},
    }


async def measure(url: str, receiver: Receiver, writes: int, samples: int) -> dict[str, float]:
    settings = Settings(
        database_url=url,
        validate_profiles=False,
        log_level="error",
        audit=False,
        statement_timeout_ms=0,
        delivery_tick=30.0,
    )
    store = make_store(settings)
    out: dict[str, float] = {}
    ctx = make_context(settings, store).acting_for(REGULATOR)
    sender = make_subscription_sender(settings, ctx)
    try:
        without = replace(
            ctx, write_hooks=tuple(h for h in ctx.write_hooks if not isinstance(h, Matcher))
        )
        for i in range(19):
            criteria = f"Appointment?actor=Practitioner/p{i}"
            await create.create(ctx, "Subscription", subscription(criteria, f"{receiver.url}/no"))
        matching = subscription("Appointment?status=booked", f"{receiver.url}/ok")
        await create.create(ctx, "Subscription", matching)
        for _ in range(20):  # warm-up: connections, statement caches
            await create.create(without, "Appointment", appointment())
        took = {"with": 0.0, "without": 0.0}
        with progress() as bar:
            task = bar.add_task("writes (both arms)", total=2 * writes)
            for _ in range(writes // BLOCK):
                for arm, arm_ctx in (("with", ctx), ("without", without)):
                    started = time.perf_counter()
                    for _ in range(BLOCK):
                        await create.create(arm_ctx, "Appointment", appointment())
                    took[arm] += time.perf_counter() - started
                    bar.advance(task, BLOCK)
        done = (writes // BLOCK) * BLOCK
        out["writes"] = done
        out["with"] = done / took["with"]
        out["without"] = done / took["without"]
        await sender.run_once()  # the notifications of phase 1 (not timed)
        sender.start()
        latencies: list[float] = []
        with progress() as bar:
            task = bar.add_task("latency samples", total=samples)
            for i in range(samples):
                count = len(receiver.of("/ok"))
                committed = time.perf_counter()
                await create.create(ctx, "Appointment", appointment())
                deadline = committed + 10
                while len(receiver.of("/ok")) == count:
                    if time.perf_counter() > deadline:
                        raise RuntimeError(f"sample {i}: nothing received within 10 s")
                    await asyncio.sleep(0.0005)
                latencies.append(time.perf_counter() - committed)
                bar.advance(task)
        latencies.sort()
        out["p50"] = statistics.median(latencies) * 1000
        out["p99"] = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
        out["max"] = latencies[-1] * 1000
    finally:
        await sender.stop()
        await store.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writes", type=int, default=400, help="creates per arm (x50)")
    parser.add_argument("--samples", type=int, default=100, help="latency samples")
    parser.add_argument("--no-doc", action="store_true", help="do not append to docs/perf.md")
    args = parser.parse_args()
    fhir_logging.configure("error")
    bin_dir = procs.pg_bin_dir()
    if bin_dir is None:
        raise SystemExit("PostgreSQL binaries not found under /usr/lib/postgresql/*/bin")
    load_before = os.getloadavg()[0]
    with receiving(hang=0) as receiver, procs.postgres(bin_dir) as pg:
        procs.migrate(pg.url, ROOT)
        figures = asyncio.run(measure(pg.url, receiver, args.writes, args.samples))
        version = pg.version
    command = f"python bench/subscriptions.py --writes {args.writes} --samples {args.samples}"
    ratio = figures["with"] / figures["without"]
    lines = [
        f"{int(figures['writes']):,} Appointment creates per arm, PostgreSQL {version},"
        f" {os.cpu_count()} CPUs, Python {platform.python_version()}",
        f"creates with 20 active Subscriptions:  {figures['with']:>8,.0f} /s",
        f"creates with none (same run):          {figures['without']:>8,.0f} /s   ratio"
        f" {ratio:.2f}",
        f"commit -> rest-hook receipt, woken sender ({args.samples} samples): p50"
        f" {figures['p50']:.1f} ms, p99 {figures['p99']:.1f} ms, max {figures['max']:.1f} ms",
        f"load average (1 min) before / after: {load_before:.2f} / {os.getloadavg()[0]:.2f}"
        f" on {os.cpu_count()} CPUs (other processes share the machine)",
    ]
    print("\n".join(lines))
    if args.no_doc:
        return
    perfdoc.append_run("Subscriptions (matching on writes, rest-hook latency)", command, lines)


if __name__ == "__main__":
    main()
