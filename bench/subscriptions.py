"""The cost of Subscriptions on writes and their notification latency, on PostgreSQL
(docs/subscriptions.md):

1. Appointment creates per second through the write path with 0 and with 20 active
   Subscriptions on Appointment (19 ``Appointment?actor=Practitioner/…`` that never match,
   one ``Appointment?status=booked`` that matches every write), in alternating blocks of
   the same run: the ratio is the matching's cost on a write.
2. Latency from commit to receipt at a loopback rest-hook receiver (Python's threaded HTTP
   server in this process: the figure is a floor), the sender woken by the commit (its
   tick set to 30 s): one appointment at a time, p50 / p99 / max.
3. After ONE failure: a receiver that answers 500 to each notification's first request
   and 200 to its retry; latency from the commit to the retry's receipt (default backoff:
   the retry comes 0.5-1 s after the failure). ``--tick-bound`` runs it with the retry
   sent at the sender's next tick only (the loop before issue 13's sender work: the
   30 s tick); ``--retry-only`` skips phases 1 and 2.

A throwaway PostgreSQL cluster (``procs.postgres``); only 127.0.0.1. Printed and appended
to docs/perf.md. A benchmark, not a test; every phase is bounded by its count.

    python bench/subscriptions.py                  # 400 writes per arm, 100 samples
    python bench/subscriptions.py --writes 1000 --samples 200
    python bench/subscriptions.py --retry-only --retry-samples 3 --tick-bound   # before
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
from fhir_server.delivery.loop import SenderLoop  # noqa: E402
from fhir_server.interactions import create  # noqa: E402
from fhir_server.settings import Settings  # noqa: E402
from fhir_server.subscriptions.matcher import Matcher  # noqa: E402
from tests.subscriptions.receiver import Receiver, receiving  # noqa: E402

BLOCK = 50  # writes per block; the arms alternate block by block
REGULATOR = Caller(role="regulator", client_id="bench-regulation")
# the Appointments' writer: a regulator's Appointment must book a slot; an admin's need not
# (the regulator's Subscriptions match it: a regulator reads every Appointment)
ADMIN = Caller(role="admin", client_id="bench-admin")


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


def percentiles(prefix: str, latencies: list[float], out: dict[str, float]) -> None:
    latencies.sort()
    out[f"{prefix}p50"] = statistics.median(latencies) * 1000
    out[f"{prefix}p99"] = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    out[f"{prefix}max"] = latencies[-1] * 1000


async def after_one_failure(ctx: Any, writer: Any, samples: int, out: dict[str, float]) -> None:
    """Phase 3: commit -> receipt of the retry that follows one failed notification."""
    with receiving(hang=0, script=[500, 200] * samples) as flaky:
        flaky_sub = subscription("Appointment?status=booked", f"{flaky.url}/flaky")
        await create.create(ctx, "Subscription", flaky_sub)
        await asyncio.sleep(1.5)  # every cache of this process knows it
        latencies: list[float] = []
        with progress() as bar:
            task = bar.add_task("after one failure", total=samples)
            for i in range(samples):
                seen = len(flaky.codes())
                committed = time.monotonic()
                await create.create(writer, "Appointment", appointment())
                deadline = committed + 90  # a tick-bound retry waits up to 36 s
                while len(flaky.codes()) < seen + 2:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"retry sample {i}: no retry within 90 s")
                    await asyncio.sleep(0.001)
                latencies.append(flaky.hits[seen + 1].at - committed)
                bar.advance(task)
    percentiles("retry_", latencies, out)


async def measure(
    url: str, receiver: Receiver, writes: int, samples: int, retry_samples: int
) -> dict[str, float]:
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
    writer = ctx.acting_for(ADMIN)
    sender = make_subscription_sender(settings, ctx)
    try:
        if not writes:
            sender.start()
            await after_one_failure(ctx, writer, retry_samples, out)
            return out
        without = replace(
            writer, write_hooks=tuple(h for h in ctx.write_hooks if not isinstance(h, Matcher))
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
                for arm, arm_ctx in (("with", writer), ("without", without)):
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
                await create.create(writer, "Appointment", appointment())
                deadline = committed + 10
                while len(receiver.of("/ok")) == count:
                    if time.perf_counter() > deadline:
                        raise RuntimeError(f"sample {i}: nothing received within 10 s")
                    await asyncio.sleep(0.0005)
                latencies.append(time.perf_counter() - committed)
                bar.advance(task)
        percentiles("", latencies, out)
        if retry_samples:
            await after_one_failure(ctx, writer, retry_samples, out)
    finally:
        await sender.stop()
        await store.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writes", type=int, default=400, help="creates per arm (x50)")
    parser.add_argument("--samples", type=int, default=100, help="latency samples")
    parser.add_argument(
        "--retry-samples", type=int, default=20, help="samples after one failure (0: none)"
    )
    parser.add_argument("--retry-only", action="store_true", help="phase 3 only")
    parser.add_argument(
        "--tick-bound",
        action="store_true",
        help="retries wait for the sender's tick (the loop before: for the comparison)",
    )
    parser.add_argument("--no-doc", action="store_true", help="do not append to docs/perf.md")
    args = parser.parse_args()
    if args.tick_bound:

        async def at_the_tick(self: SenderLoop) -> float:
            return self.tick * self.rng.uniform(0.8, 1.2)

        setattr(SenderLoop, "wait_time", at_the_tick)  # noqa: B010
    writes = 0 if args.retry_only else args.writes
    retry_samples = max(1, args.retry_samples) if args.retry_only else args.retry_samples
    fhir_logging.configure("error")
    bin_dir = procs.pg_bin_dir()
    if bin_dir is None:
        raise SystemExit("PostgreSQL binaries not found under /usr/lib/postgresql/*/bin")
    load_before = os.getloadavg()[0]
    with receiving(hang=0) as receiver, procs.postgres(bin_dir) as pg:
        procs.migrate(pg.url, ROOT)
        figures = asyncio.run(measure(pg.url, receiver, writes, args.samples, retry_samples))
        version = pg.version
    if args.retry_only:
        command = f"python bench/subscriptions.py --retry-only --retry-samples {retry_samples}"
    else:
        command = (
            f"python bench/subscriptions.py --writes {args.writes} --samples {args.samples}"
            f" --retry-samples {retry_samples}"
        )
    command += " --tick-bound" if args.tick_bound else ""
    lines = [f"PostgreSQL {version}, {os.cpu_count()} CPUs, Python {platform.python_version()}"]
    if writes:
        ratio = figures["with"] / figures["without"]
        lines += [
            f"{int(figures['writes']):,} Appointment creates per arm",
            f"creates with 20 active Subscriptions:  {figures['with']:>8,.0f} /s",
            f"creates with none (same run):          {figures['without']:>8,.0f} /s   ratio"
            f" {ratio:.2f}",
            f"commit -> rest-hook receipt, woken sender ({args.samples} samples): p50"
            f" {figures['p50']:.1f} ms, p99 {figures['p99']:.1f} ms,"
            f" max {figures['max']:.1f} ms",
        ]
    if retry_samples:
        how = "at the next tick (30 s)" if args.tick_bound else "at its next_attempt"
        lines.append(
            f"commit -> receipt after one failure, retry {how} ({retry_samples} samples): p50"
            f" {figures['retry_p50']:.0f} ms, p99 {figures['retry_p99']:.0f} ms,"
            f" max {figures['retry_max']:.0f} ms"
        )
    lines += [
        f"load average (1 min) before / after: {load_before:.2f} / {os.getloadavg()[0]:.2f}"
        f" on {os.cpu_count()} CPUs (other processes share the machine)",
    ]
    print("\n".join(lines))
    if args.no_doc:
        return
    perfdoc.append_run("Subscriptions (matching on writes, rest-hook latency)", command, lines)


if __name__ == "__main__":
    main()
