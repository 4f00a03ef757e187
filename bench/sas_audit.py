"""Audit trail benchmark: the SAS PS slot search with the audit trail off and on, one run.

On a throwaway PostgreSQL cluster (``procs.py``) or, with ``--engine sqlite``, a SQLite file,
it loads a SAS data set (``sas_data.py`` through ``sas_load.py``), then starts two
``fhir-server serve`` processes on that one database, identical but for ``FHIR_AUDIT``
(``false`` / ``true``). Both preload the availability cache; neither writes access lines
(this measures the audit trail, not the log). Then ``--rounds`` rounds, each a bounded
closed loop (``loadgen.py``) of the INT_R01 PS query (5 random practitioners, 72 hours,
includes, as ``sas_search.py`` sends it) against one server then the other, the order
alternating from round to round, so that the machine's drift hits both sides alike.

Printed, and appended to ``docs/perf.md`` (plus its line in "Current figures"): requests
per second, p50/p99 latency and server CPU per request of each side (the audit side's CPU
includes its writer's batched inserts, and on PostgreSQL its backends' CPU counts for both),
their ratio (on / off), and whether the AuditEvents stored equal the requests the audited
server answered (its writer is stopped first: SIGINT drains it).

A benchmark, not a test; every loop is bounded in time and count; only 127.0.0.1 is used.

    python bench/sas_audit.py                       # PostgreSQL, ~3 minutes
    python bench/sas_audit.py --engine sqlite
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import loadgen
import procs
import sas_data
import sas_load
from sas_search import pick, ps_query, wait_warm

HERE = Path(__file__).resolve().parent
DOC = HERE.parent / "docs" / "perf.md"
SIDES = ("off", "on")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--practitioners", type=int, default=400, help="data set size")
    parser.add_argument("--rounds", type=int, default=4, help="rounds (each: off and on)")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per side per round")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before each measure")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-requests", type=int, default=200_000, help="cap per measure")
    parser.add_argument("--no-doc", action="store_true", help="do not append to docs/perf.md")
    return parser.parse_args(argv)


@dataclass
class Side:
    name: str
    requests: int = 0
    seconds: float = 0.0
    server_cpu: float = 0.0  # seconds
    db_cpu: float = 0.0  # seconds (PostgreSQL backends: shared by both servers, per measure)
    latencies: list[float] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)  # per round

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def cpu_ms(self, seconds: float) -> float:
        return seconds / self.requests * 1000 if self.requests else 0.0

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return 0.0
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000


@contextmanager
def database(engine: str, tmp: Path) -> Iterator[tuple[str, Callable[[], float]]]:
    """The database's URL and a probe of its CPU seconds (0 for SQLite: in the servers)."""
    if engine == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp}/fhir.sqlite", lambda: 0.0
        return
    bin_dir = procs.pg_bin_dir()
    if bin_dir is None:
        raise SystemExit("PostgreSQL binaries not found (/usr/lib/postgresql/*/bin)")
    with procs.postgres(bin_dir) as pg:

        def db_cpu() -> float:
            pid = pg.postmaster_pid()
            return procs.children_cpu_seconds(pid) if pid else 0.0

        yield pg.url, db_cpu


async def load_data(url: str, spec: sas_data.Spec) -> None:
    async with sas_load.opened(url) as ctx:
        await sas_load.load(ctx, spec, show_progress=False, engine=ctx.store.dialect)
        await ctx.store.optimize()


async def count_events(url: str) -> int:
    async with sas_load.opened(url, migrate=False) as ctx:
        page = await ctx.store.history(
            res_type="AuditEvent", res_id=None, since=None, at=None, count=1, offset=0
        )
        return page.total


def server_env(url: str, audit: bool) -> dict[str, str]:
    return {
        "FHIR_DATABASE_URL": url,
        "FHIR_PACKAGE_PATH": str(sas_load.package_path()),
        "FHIR_AUTH": "none",
        "FHIR_LOG_LEVEL": "info",  # "availability cache warm"
        "FHIR_ACCESS_LOG": "false",  # the same on both sides: this measures the audit trail
        "FHIR_AUDIT": "true" if audit else "false",
    }


async def measure(
    base: str,
    spec: sas_data.Spec,
    args: argparse.Namespace,
    seed: int,
    probes: dict[str, Callable[[], float]],
) -> loadgen.Result:
    rng = random.Random(seed)
    picks = [pick(spec, rng) for _ in range(2000)]
    load = loadgen.Load(
        "ps",
        lambda n: ("GET", ps_query(spec, picks[n % len(picks)]), None, {}),
        200,
        concurrency=args.concurrency,
    )
    client = loadgen.make_client("httpx", base, args.concurrency, 30.0)
    try:
        return await loadgen.run_load(
            client,
            load,
            duration=args.duration,
            max_requests=args.max_requests,
            warmup=args.warmup,
            cpu_probes=probes,
        )
    finally:
        await client.aclose()


def run(args: argparse.Namespace) -> tuple[dict[str, Side], dict[str, str]]:
    spec = sas_data.Spec(practitioners=args.practitioners)
    sides = {name: Side(name) for name in SIDES}
    facts: dict[str, str] = {}
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fhir-bench-audit-")))
        url, db_cpu = stack.enter_context(database(args.engine, tmp))
        if args.engine == "postgresql":
            procs.migrate(url, tmp)
        started = time.perf_counter()
        asyncio.run(load_data(url, spec))
        facts["slots"] = f"{sas_data.count_slots(spec):,}"
        facts["load seconds"] = f"{time.perf_counter() - started:.0f}"
        servers = {}
        for name in SIDES:
            port = procs.free_port()
            log = tmp / f"server-{name}.log"
            env = {**os.environ, **procs.package_env(), **server_env(url, name == "on")}
            servers[name] = stack.enter_context(
                procs.server(procs.fhir_server_argv(port), env, log, port=port)
            )
            wait_warm(log, 1, servers[name].process)
        for round_no in range(args.rounds):
            order = SIDES if round_no % 2 == 0 else SIDES[::-1]
            for name in order:
                server = servers[name]
                pid = server.process.pid
                probes = {"server": lambda pid=pid: procs.cpu_seconds(pid), "db": db_cpu}
                result = asyncio.run(measure(server.base, spec, args, round_no, probes))
                if result.errors:
                    raise SystemExit(f"{name}: {result.errors} errors: {result.error_samples}")
                side = sides[name]
                side.requests += result.requests
                side.seconds += result.elapsed
                side.server_cpu += result.cpu["server"] * result.elapsed
                side.db_cpu += result.cpu["db"] * result.elapsed
                side.latencies.extend(result.latencies)
                side.rates.append(result.rate)
                print(f"round {round_no + 1} {name:>3}: {result.rate:7.1f} req/s")
        answered_on = servers["on"].process.pid
        procs.stop(servers["on"].process)  # SIGINT: the writer drains before the exit
        facts["audit server pid"] = str(answered_on)
        events = asyncio.run(count_events(url))
        facts["events stored"] = f"{events:,}"
    return sides, facts


def table(sides: dict[str, Side]) -> list[str]:
    lines = [
        "| audit | req/s | per round | p50 ms | p99 ms | server CPU ms/req | db CPU ms/req |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for side in sides.values():
        rounds = ", ".join(f"{r:.0f}" for r in side.rates)
        lines.append(
            f"| {side.name} | {side.rate:.1f} | {rounds} | {side.percentile(50):.2f} "
            f"| {side.percentile(99):.2f} | {side.cpu_ms(side.server_cpu):.3f} "
            f"| {side.cpu_ms(side.db_cpu):.3f} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sides, facts = run(args)
    off, on = sides["off"], sides["on"]
    ratio = on.rate / off.rate if off.rate else 0.0
    per_round = [b / a for a, b in zip(off.rates, on.rates, strict=True) if a]
    cpu_extra = on.cpu_ms(on.server_cpu) - off.cpu_ms(off.server_cpu)
    # the warm-ups are audited too: the audited server answered at least the measured requests
    complete = int(facts["events stored"].replace(",", "")) >= on.requests
    summary = [
        f"audit on / off: **{ratio:.2f}x** req/s (rounds: "
        + ", ".join(f"{r:.2f}" for r in per_round)
        + f", median {statistics.median(per_round):.2f}); server CPU {cpu_extra:+.3f} ms per "
        f"request; AuditEvents stored {facts['events stored']} for {on.requests:,} measured "
        f"audited requests plus warm-ups ({'none lost' if complete else 'SOME MISSING'})",
    ]
    lines = table(sides)
    print("\n".join(lines))
    print(summary[0])
    if args.no_doc:
        return 0
    when = datetime.now(UTC)
    shown = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--no-doc"]
    command = " ".join(["python bench/sas_audit.py", *shown])
    section = [
        "",
        f"## Audit trail, {args.engine}, run of {when:%Y-%m-%d %H:%M} UTC",
        "",
        f"`{command}` ({args.rounds} rounds of {args.duration:g} s per side, concurrency "
        f"{args.concurrency}, {facts['slots']} slots of {args.practitioners} practitioners, "
        "one uvicorn process per side on the same database, no access lines, availability "
        "cache warm; the PS query of `sas_search.py`).",
        "",
        *lines,
        "",
        summary[0] + ".",
        "",
    ]
    text = DOC.read_text()
    row = (
        f"| SAS PS search with the audit trail, {args.engine}, 1 worker | audit on "
        f"{on.rate:.0f} req/s, p99 {on.percentile(99):.1f} ms | audit off {off.rate:.0f} req/s, "
        f"p99 {off.percentile(99):.1f} ms: **{ratio:.2f}x** | `{command}` | {when:%Y-%m-%d} |"
    )
    marker = "\n## How the benchmarks run"
    table_end = text.index(marker)
    head = text[:table_end].rstrip("\n").split("\n")
    head = [
        ln
        for ln in head
        if not ln.startswith(f"| SAS PS search with the audit trail, {args.engine},")
    ]
    text = "\n".join(head) + "\n" + row + "\n" + text[table_end:]
    DOC.write_text(text.rstrip("\n") + "\n" + "\n".join(section))
    print(f"appended to {DOC}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
