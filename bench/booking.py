"""Booking benchmark: a real ``fhir-server serve`` process on a throwaway PostgreSQL, over
loopback, the platform role booking (``FHIR_AUTH=none``, ``FHIR_DEFAULT_ROLE=platform``).

- ``hot``: N clients race for one slot at a time (each round a fresh slot; one wins, the
  others get 409): attempts/s, bookings/s, p99 of the attempts;
- ``distinct``: N clients book 1,000 distinct slots (each once): bookings/s and p99;
- ``plain``: N clients create Appointments without a slot: creates/s and p99 (the baseline:
  ratio booking / plain);
- ``search``: M clients run the SAS PS slot search (one schedule's free slots over 72 h,
  Schedule and actors included) alone, then while ``distinct``-like bookings run: requests/s
  both ways (ratio).

Printed and appended to ``docs/perf.md`` (a new section; the "current figures" table is the
maintainer's). A benchmark, not a test: nothing fails on slow numbers. Every loop is bounded
in count and time; only 127.0.0.1 is contacted.

    python bench/booking.py                         # defaults: 50 clients, 1,000 slots
    python bench/booking.py --clients 20 --slots 300 --duration 5 --no-doc
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import procs
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "perf.md"
FHIR = {"Content-Type": "application/fhir+json"}
SCHEDULES = 10
console = Console(width=None if sys.stdout.isatty() else 150)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=50, help="concurrent booking clients")
    p.add_argument("--slots", type=int, default=1000, help="distinct slots booked")
    p.add_argument("--hot-rounds", type=int, default=100, help="hot-slot rounds (1 slot each)")
    p.add_argument("--searchers", type=int, default=4, help="concurrent SAS search clients")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per timed phase (cap)")
    p.add_argument("--timeout", type=float, default=60.0, help="per-request timeout (s)")
    p.add_argument("--no-doc", action="store_true", help="print only")
    args = p.parse_args(argv)
    if min(args.clients, args.slots, args.hot_rounds, args.searchers) < 1 or args.duration <= 0:
        p.error("counts must be at least 1 and --duration positive")
    return args


# -- data -------------------------------------------------------------------------------------


def slot(res_id: str, schedule: str, start: datetime) -> dict[str, Any]:
    return {
        "resourceType": "Slot",
        "id": res_id,
        "schedule": {"reference": f"Schedule/{schedule}"},
        "status": "free",
        "start": start.isoformat(),
        "end": (start + timedelta(minutes=20)).isoformat(),
    }


def dataset(args: argparse.Namespace) -> tuple[dict[str, Any], list[dict[str, Any]], list[Any]]:
    """The Bundle to load, the distinct slots (spread over ``SCHEDULES`` schedules, 72 h),
    and the hot slots (schedule ``hot``)."""
    base = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(hours=1)
    resources: list[dict[str, Any]] = []
    for s in [*(f"s{i}" for i in range(SCHEDULES)), "hot"]:
        resources.append({"resourceType": "Schedule", "id": s, "actor": [{"display": f"Dr {s}"}]})
    distinct = []
    for i in range(args.slots):
        start = base + timedelta(minutes=20 * (i // SCHEDULES))
        distinct.append(slot(f"d{i}", f"s{i % SCHEDULES}", start))
    hot = [slot(f"h{i}", "hot", base + timedelta(minutes=20 * i)) for i in range(args.hot_rounds)]
    resources += distinct + hot
    entries = [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
        for r in resources
    ]
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}, distinct, hot


def appointment(*slots: dict[str, Any], at: dict[str, Any] | None = None) -> dict[str, Any]:
    """Booking ``slots``; without slots, a plain Appointment at the times of ``at``."""
    out: dict[str, Any] = {
        "resourceType": "Appointment",
        "status": "booked",
        "participant": [{"status": "accepted", "actor": {"display": "patient"}}],
    }
    if slots:
        out["slot"] = [{"reference": f"Slot/{s['id']}"} for s in slots]
        out["start"], out["end"] = slots[0]["start"], slots[-1]["end"]
    elif at is not None:  # a booked Appointment has times (invariant app-3)
        out["start"], out["end"] = at["start"], at["end"]
    return out


# -- measuring --------------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    latencies: list[float] = field(default_factory=list)
    codes: dict[int, int] = field(default_factory=dict)
    seconds: float = 0.0

    def add(self, code: int, latency: float) -> None:
        self.codes[code] = self.codes.get(code, 0) + 1
        self.latencies.append(latency)

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def rate_of(self, code: int) -> float:
        return self.codes.get(code, 0) / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def timed(
    phase: Phase, client: httpx.AsyncClient, send: Callable[[], Awaitable[httpx.Response]]
) -> httpx.Response:
    t0 = time.perf_counter()
    r = await send()
    phase.add(r.status_code, time.perf_counter() - t0)
    return r


async def hot(client: httpx.AsyncClient, base: str, slots: list[Any], n: int, cap: float) -> Phase:
    phase = Phase("hot slot")
    t0 = time.perf_counter()
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("hot slot rounds", total=len(slots))
        for s in slots:
            body = appointment(s)
            await asyncio.gather(
                *(
                    timed(phase, client, partial(client.post, f"{base}/Appointment", json=body))
                    for _ in range(n)
                )
            )
            progress.advance(task)
            if time.perf_counter() - t0 > cap:
                break
    phase.seconds = time.perf_counter() - t0
    return phase


async def workers(
    name: str, n: int, cap: float, jobs: list[Any], step: Callable[[Phase, Any], Awaitable[Any]]
) -> Phase:
    """``n`` clients taking jobs from one queue until it is empty or ``cap`` seconds pass."""
    phase = Phase(name)
    queue = list(reversed(jobs))
    t0 = time.perf_counter()

    async def worker() -> None:
        while queue and time.perf_counter() - t0 < cap:
            await step(phase, queue.pop())

    await asyncio.gather(*(worker() for _ in range(n)))
    phase.seconds = time.perf_counter() - t0
    return phase


async def searching(
    name: str, client: httpx.AsyncClient, base: str, m: int, stop: asyncio.Event, cap: float
) -> Phase:
    phase = Phase(name)
    day = datetime.now(UTC)
    query = (
        "/Slot?schedule={s}&start=ge{a}&start=le{b}&status=free"
        "&_include=Slot:schedule&_include:iterate=Schedule:actor"
    )
    t0 = time.perf_counter()

    async def worker(k: int) -> None:
        i = k
        while not stop.is_set() and time.perf_counter() - t0 < cap:
            url = base + query.format(
                s=f"Schedule/s{i % SCHEDULES}",
                a=day.strftime("%Y-%m-%dT%H:%M:%SZ"),
                b=(day + timedelta(hours=72)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            )
            await timed(phase, client, lambda u=url: client.get(u))  # type: ignore[misc]
            i += m

    await asyncio.gather(*(worker(k) for k in range(m)))
    phase.seconds = time.perf_counter() - t0
    return phase


async def scenarios(
    base: str, args: argparse.Namespace, distinct: list[Any], hot_slots: list[Any]
) -> dict[str, Phase]:
    limits = httpx.Limits(max_connections=args.clients + args.searchers + 4)
    out: dict[str, Phase] = {}
    async with httpx.AsyncClient(
        timeout=args.timeout, limits=limits, headers=FHIR, trust_env=False
    ) as client:
        half = len(distinct) // 2

        async def book(phase: Phase, s: Any) -> None:
            await timed(
                phase, client, lambda: client.post(f"{base}/Appointment", json=appointment(s))
            )

        async def plain(phase: Phase, s: Any) -> None:
            body = appointment(at=s)
            await timed(phase, client, lambda: client.post(f"{base}/Appointment", json=body))

        with console.status("SAS search alone"):
            stop = asyncio.Event()
            out["search alone"] = await searching(
                "search alone", client, base, args.searchers, stop, args.duration
            )
        with console.status(f"booking {len(distinct) - half} distinct slots"):
            out["distinct"] = await workers(
                "distinct", args.clients, args.duration * 3, distinct[half:], book
            )
        with console.status(f"{len(distinct)} plain creates"):
            out["plain"] = await workers("plain", args.clients, args.duration * 3, distinct, plain)
        out["hot"] = await hot(client, base, hot_slots, args.clients, args.duration * 3)
        with console.status("SAS search while booking"):
            stop = asyncio.Event()
            search = asyncio.create_task(
                searching(
                    "search with booking", client, base, args.searchers, stop, args.duration * 3
                )
            )
            out["booking with search"] = await workers(
                "booking with search", args.clients, args.duration * 3, distinct[:half], book
            )
            stop.set()
            out["search with booking"] = await search
    return out


# -- report -----------------------------------------------------------------------------------


def report(out: dict[str, Phase], args: argparse.Namespace, command: str) -> str:
    table = Table(title="booking on PostgreSQL (one serve process)")
    for col in ("phase", "requests", "req/s", "201/s", "409", "p50 ms", "p99 ms"):
        table.add_column(col)
    lines = [
        "",
        f"## Booking ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        f"`{command}`: one `fhir-server serve` process on a throwaway PostgreSQL, loopback,"
        f" {args.clients} booking clients, {args.searchers} SAS search clients; machine shared"
        " with other work (2 cores).",
        "",
        "| phase | requests | req/s | 201/s | 409 | p50 ms | p99 ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for p in out.values():
        row = [
            p.name,
            str(len(p.latencies)),
            f"{p.rate:.1f}",
            f"{p.rate_of(201):.1f}",
            str(p.codes.get(409, 0)),
            f"{p.pct(0.5):.1f}",
            f"{p.pct(0.99):.1f}",
        ]
        table.add_row(*row)
        lines.append("| " + " | ".join(row) + " |")
    ratio = out["distinct"].rate_of(201) / max(out["plain"].rate_of(201), 1e-9)
    search = out["search with booking"].rate / max(out["search alone"].rate, 1e-9)
    summary = (
        f"Bookings/s over plain creates/s: {ratio:.2f}. SAS search req/s while bookings run"
        f" over alone: {search:.2f}. Other codes: "
        + ", ".join(f"{p.name} {sorted(p.codes.items())}" for p in out.values())
    )
    lines += ["", summary, ""]
    console.print(table)
    console.print(summary)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    command = "python bench/booking.py " + " ".join(sys.argv[1:] if argv is None else argv)
    bin_dir = procs.pg_bin_dir()
    if bin_dir is None:
        raise SystemExit("PostgreSQL binaries not found under /usr/lib/postgresql/*/bin")
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fhir-bench-book-")))
        with console.status("starting a throwaway PostgreSQL cluster"):
            pg = stack.enter_context(procs.postgres(bin_dir))
        procs.migrate(pg.url, work)
        bundle, distinct, hot_slots = dataset(args)
        (work / "data.json").write_text(json.dumps(bundle))
        env = {
            "FHIR_DATABASE_URL": pg.url,
            "FHIR_LOG_LEVEL": "warning",
            "FHIR_AUTH": "none",
            "FHIR_DEFAULT_ROLE": "platform",
            "FHIR_AUDIT": "false",
            "FHIR_ACCESS_LOG": "false",
            **procs.package_env(),
        }
        with console.status(f"loading {len(bundle['entry'])} resources"):
            done = subprocess.run(
                [*procs.fhir_server_command(), "load", str(work / "data.json")],
                env={**os.environ, **env},
                capture_output=True,
                text=True,
                timeout=600,
                cwd=work,
            )
        if done.returncode:
            raise SystemExit(f"load failed:\n{done.stdout}{done.stderr}")
        port = procs.free_port()
        with console.status("starting fhir-server"):
            srv = stack.enter_context(
                procs.server(procs.fhir_server_argv(port), env, work / "server.log", port=port)
            )
        out = asyncio.run(scenarios(srv.base, args, distinct, hot_slots))
    text = report(out, args, command)
    if not args.no_doc:
        with DOC.open("a") as f:
            f.write(text)
        console.print(f"appended to {DOC}")


if __name__ == "__main__":
    main()
