"""Websocket pings across processes (docs/subscriptions.md, "Across processes"): two
``fhir-server serve`` processes A and B on one throwaway PostgreSQL; a websocket client
bound on each to one ``Appointment?status=booked`` Subscription; one Appointment at a time
created through B. Per write:

- the write's own time (request sent -> answer received, through B);
- A's ping (ANOTHER process than the writer: NOTIFY at commit, A's LISTEN connection,
  A's hub, the socket) and B's ping (the writer's own process, by the same path), each
  measured from the request sent and from the answer received (the commit is between the
  two: a ping may come before the answer, then the second figure is negative).

Printed and appended to docs/perf.md. Only 127.0.0.1; every wait is bounded. A benchmark,
not a test.

    python bench/subscriptions_ws.py                 # 200 samples
    python bench/subscriptions_ws.py --samples 500
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import perfdoc
import procs
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from websockets.asyncio.client import ClientConnection, connect

ROOT = Path(__file__).resolve().parents[1]
FHIR = {"Content-Type": "application/fhir+json"}
PING_TIMEOUT = 10.0  # seconds a ping may take before the run is called failed


def appointment(i: int) -> dict[str, Any]:
    return {
        "resourceType": "Appointment",
        "status": "booked",
        "start": "2026-06-12T16:20:00+02:00",
        "end": "2026-06-12T16:40:00+02:00",
        "participant": [{"actor": {"display": f"bench {i}"}, "status": "accepted"}],
    }


async def bound(base: str, sub: str) -> ClientConnection:
    ws = await connect(base.replace("http://", "ws://") + "/$subscription-websocket")
    await ws.send(f"bind {sub}")
    answer = await asyncio.wait_for(ws.recv(), PING_TIMEOUT)
    if answer != f"bound {sub}":
        raise SystemExit(f"bind refused: {answer}")
    return ws


async def pinged(ws: ClientConnection) -> float:
    await asyncio.wait_for(ws.recv(), PING_TIMEOUT)
    return time.perf_counter()


async def measure(a: str, b: str, samples: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {k: [] for k in ("write", "a_req", "a_ans", "b_req", "b_ans")}
    async with httpx.AsyncClient(timeout=30, headers=FHIR, trust_env=False) as client:
        body = {
            "resourceType": "Subscription",
            "status": "requested",
            "reason": "bench",
            "criteria": "Appointment?status=booked",
            "channel": {"type": "websocket"},
        }
        r = await client.post(f"{a}/Subscription", json=body)
        r.raise_for_status()
        sub = str(r.json()["id"])
        await asyncio.sleep(1.5)  # B's cache of Subscriptions reloads within 1 s
        on_a, on_b = await bound(a, sub), await bound(b, sub)
        try:
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
            ) as bar:
                task = bar.add_task("writes through B, pings on A and B", total=samples)
                for i in range(samples):
                    wait_a = asyncio.create_task(pinged(on_a))
                    wait_b = asyncio.create_task(pinged(on_b))
                    sent = time.perf_counter()
                    answer = await client.post(f"{b}/Appointment", json=appointment(i))
                    answered = time.perf_counter()
                    answer.raise_for_status()
                    at_a, at_b = await wait_a, await wait_b
                    out["write"].append(answered - sent)
                    out["a_req"].append(at_a - sent)
                    out["a_ans"].append(at_a - answered)
                    out["b_req"].append(at_b - sent)
                    out["b_ans"].append(at_b - answered)
                    bar.advance(task)
        finally:
            await on_a.close()
            await on_b.close()
    return out


def quantiles(values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    cuts = statistics.quantiles(ms, n=100, method="inclusive")
    return f"p50 {cuts[49]:6.1f} ms, p99 {cuts[98]:6.1f} ms, max {ms[-1]:6.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=200, help="writes (one at a time)")
    parser.add_argument("--no-doc", action="store_true", help="do not append to docs/perf.md")
    args = parser.parse_args()
    if args.samples < 2:
        raise SystemExit("--samples must be at least 2")
    bin_dir = procs.pg_bin_dir()
    if bin_dir is None:
        raise SystemExit("PostgreSQL binaries not found under /usr/lib/postgresql/*/bin")
    load_before = os.getloadavg()[0]
    with procs.postgres(bin_dir) as pg, tempfile.TemporaryDirectory() as tmp:
        procs.migrate(pg.url, ROOT)
        env = {
            **procs.package_env(),
            "FHIR_DATABASE_URL": pg.url,
            "FHIR_AUTH": "none",
            "FHIR_DEFAULT_ROLE": "admin",
            "FHIR_AUDIT": "false",
            "FHIR_LOG_LEVEL": "warning",
            "FHIR_ACCESS_LOG": "false",
        }
        port_a, port_b = procs.free_port(), procs.free_port()
        with (
            procs.server(
                procs.fhir_server_argv(port_a), env, Path(tmp) / "a.log", port=port_a
            ) as a,
            procs.server(
                procs.fhir_server_argv(port_b), env, Path(tmp) / "b.log", port=port_b
            ) as b,
        ):
            figures = asyncio.run(measure(a.base, b.base, args.samples))
        version = pg.version
    lines = [
        f"{args.samples} Appointment creates through process B, one at a time; PostgreSQL"
        f" {version}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        f"write through B (request -> answer):     {quantiles(figures['write'])}",
        f"ping on A, another process (from request): {quantiles(figures['a_req'])}",
        f"ping on A, another process (from answer):  {quantiles(figures['a_ans'])}",
        f"ping on B, the writer's (from request):    {quantiles(figures['b_req'])}",
        f"ping on B, the writer's (from answer):     {quantiles(figures['b_ans'])}",
        f"load average (1 min) before / after: {load_before:.2f} / {os.getloadavg()[0]:.2f}"
        f" on {os.cpu_count()} CPUs (other processes share the machine)",
    ]
    print("\n".join(lines))
    if not args.no_doc:
        command = f"python bench/subscriptions_ws.py --samples {args.samples}"
        perfdoc.append_run("Websocket pings across processes (PostgreSQL NOTIFY)", command, lines)


if __name__ == "__main__":
    main()
