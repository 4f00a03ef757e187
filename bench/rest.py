"""REST benchmark of the FHIR server: create, read, transaction, and a read baseline.

For each engine (SQLite in a temporary folder; PostgreSQL in a throwaway cluster this script
starts with initdb/pg_ctl and stops at the end) it starts ``fhir-server serve`` as a real
process on 127.0.0.1 (one uvicorn process), preloads N slots through transaction bundles, and
drives closed-loop load with a fixed number of concurrent requests:

- ``read``: ``GET /Slot/{id}`` of random ids among the N preloaded slots;
- ``constant``: the same app with one extra route answering a stored slot's bytes without
  the database (``bench/constant_app.py``, its own process): the ceiling for ``read``;
- ``create``: ``POST /Slot`` of a new realistic SAS slot each time;
- ``transaction``: ``POST /`` with a transaction Bundle of 100 Slot creates.

Results are printed and appended to ``docs/perf.md``. A benchmark, not a test: nothing
fails on slow numbers. Every loop is bounded in time and count; only 127.0.0.1 is contacted.

    python bench/rest.py                                  # defaults: 10 s, N=10,000, both engines
    python bench/rest.py --duration 3 --preload 2000      # a couple of minutes
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import loadgen
import orjson
import procs
import slotgen
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DOC = ROOT / "docs" / "perf.md"
ENGINES = ("sqlite", "postgresql")
SCENARIOS = ("read", "constant", "create", "transaction")
T = TypeVar("T")
Probes = dict[str, Callable[[], float]]
console = Console(width=None if sys.stdout.isatty() else 150)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="REST benchmark of the FHIR server (create, read, transaction, baseline)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--engines", default=",".join(ENGINES), help="comma list among sqlite,postgresql"
    )
    p.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help="comma list of " + ",".join(SCENARIOS)
    )
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per scenario")
    p.add_argument(
        "--warmup",
        type=float,
        default=None,
        help="unmeasured seconds first (default: duration/5, at most 2)",
    )
    p.add_argument(
        "--max-requests", type=int, default=200_000, help="hard cap of requests per scenario"
    )
    p.add_argument(
        "--preload", type=int, default=10_000, help="slots stored before the read scenario"
    )
    p.add_argument("--preload-batch", type=int, default=500, help="slots per preload transaction")
    p.add_argument(
        "--bundle-size",
        type=int,
        default=100,
        help="slots per transaction in the transaction scenario",
    )
    p.add_argument(
        "--client", choices=loadgen.CLIENTS, default="raw", help="HTTP client of the load runner"
    )
    p.add_argument("--timeout", type=float, default=60.0, help="per-request timeout (seconds)")
    p.add_argument("--seed", type=int, default=20270111, help="random seed (data and read ids)")
    p.add_argument(
        "--doc", type=Path, default=DOC, help="Markdown file the results are appended to"
    )
    p.add_argument("--no-doc", action="store_true", help="print only, do not append to --doc")
    args = p.parse_args(argv)
    args.engines = _choices(p, "--engines", args.engines, ENGINES)
    args.scenarios = _choices(p, "--scenarios", args.scenarios, SCENARIOS)
    if args.warmup is None:
        args.warmup = min(2.0, args.duration / 5)
    for name in ("concurrency", "max_requests", "preload_batch", "bundle_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.duration <= 0 or args.timeout <= 0 or args.preload < 0:
        p.error("--duration and --timeout must be positive, --preload not negative")
    if {"read", "constant"} & set(args.scenarios) and args.preload < 1:
        p.error("the read and constant scenarios need --preload of at least 1")
    return args


def _choices(
    p: argparse.ArgumentParser, flag: str, value: str, allowed: tuple[str, ...]
) -> list[str]:
    chosen = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in chosen if v not in allowed]
    if unknown or not chosen:
        p.error(f"{flag}: {', '.join(unknown) or '(empty)'} not among {', '.join(allowed)}")
    return [v for v in allowed if v in chosen]  # fixed order


# -- machine ----------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    model, mem_kib = "unknown", 0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    bin_dir = procs.pg_bin_dir()
    try:
        uvloop_version = __import__("uvloop").__version__
    except ImportError:
        uvloop_version = "not installed"
    return {
        "nproc": str(len(os.sched_getaffinity(0))),
        "cpu": model,
        "memory": f"{mem_kib / 1024 / 1024:.1f} GiB",
        "python": platform.python_version(),
        "postgresql": f"PostgreSQL {procs.pg_version(bin_dir)}" if bin_dir else "not installed",
        "uvloop": uvloop_version,
        "kernel": platform.release(),
    }


# -- one engine -------------------------------------------------------------------------------


@dataclass
class EngineReport:
    engine: str
    results: list[loadgen.Result] = field(default_factory=list)
    preloaded: int = 0
    preload_seconds: float = 0.0
    slot_bytes: int = 0  # a stored slot as read back
    create_body_bytes: int = 0
    bundle_bytes: int = 0
    slots_at_end: int = 0
    skipped: str | None = None

    def result(self, scenario: str) -> loadgen.Result | None:
        return next((r for r in self.results if r.scenario == scenario), None)

    @property
    def ratio(self) -> float | None:
        read, const = self.result("read"), self.result("constant")
        if read is None or const is None or not const.rate:
            return None
        return read.rate / const.rate


class Bench:
    def __init__(self, args: argparse.Namespace, runner: asyncio.Runner) -> None:
        self.args = args
        self.runner = runner

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(coro)

    def engine(self, engine: str) -> EngineReport:
        report = EngineReport(engine)
        try:
            with ExitStack() as stack:
                self._engine(stack, report)
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            report.skipped = f"failed: {exc}"
            console.print(f"[red]{engine} failed:[/red] {exc}")
        return report

    def _database(self, stack: ExitStack, engine: str, work: Path) -> tuple[str, Probes]:
        """The database URL (a throwaway cluster for PostgreSQL) and its CPU probe."""
        if engine == "sqlite":
            return f"sqlite+aiosqlite:///{work}/fhir.sqlite", {}
        bin_dir = procs.pg_bin_dir()
        if bin_dir is None:
            raise RuntimeError("PostgreSQL binaries not found under /usr/lib/postgresql/*/bin")
        with console.status("starting a throwaway PostgreSQL cluster"):
            pg = stack.enter_context(procs.postgres(bin_dir))

        def db_cpu() -> float:
            pid = pg.postmaster_pid()
            return procs.children_cpu_seconds(pid) if pid else 0.0

        procs.migrate(pg.url, work)
        return pg.url, {"db": db_cpu}

    def _engine(self, stack: ExitStack, report: EngineReport) -> None:
        args = self.args
        prefix = f"fhir-bench-{report.engine}-"
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=prefix)))
        url, db_probes = self._database(stack, report.engine, work)
        env = {
            "FHIR_DATABASE_URL": url,
            "FHIR_LOG_LEVEL": "warning",
            "FHIR_AUTH": "none",
            **procs.package_env(),
        }
        port = procs.free_port()
        with console.status(f"starting fhir-server on {report.engine}"):
            server = stack.enter_context(
                procs.server(procs.fhir_server_argv(port), env, work / "server.log", port=port)
            )
        probes: Probes = {
            "server": lambda: procs.cpu_seconds(server.process.pid),
            "client": time.process_time,
            **db_probes,
        }
        ids = self.run(self.preload(server.base, report)) if args.preload else []
        sample = self.run(self.sample(server.base, ids))
        report.slot_bytes = len(sample)
        rng = random.Random(args.seed + 1)
        report.create_body_bytes = len(slotgen.slot_bytes(rng, 0))
        report.bundle_bytes = len(slotgen.transaction_bytes(rng, 0, args.bundle_size))

        if "read" in args.scenarios:
            report.results.append(self.run(self.read(server.base, ids, probes, "read", "/Slot/")))
        if "constant" in args.scenarios:
            body_file = work / "constant-body.json"
            body_file.write_bytes(sample)
            cport = procs.free_port()
            argv = [sys.executable, str(HERE / "constant_app.py"), "--port", str(cport)]
            argv += ["--body-file", str(body_file)]
            with console.status("starting the constant baseline server"):
                const = stack.enter_context(
                    procs.server(argv, env, work / "constant.log", port=cport)
                )
            cprobes = {**probes, "server": lambda: procs.cpu_seconds(const.process.pid)}
            result = self.run(self.read(const.base, ids, cprobes, "constant", "/__constant/"))
            report.results.append(result)
            procs.stop(const.process)  # idle from here on; the stack would stop it at the end
        if "create" in args.scenarios:
            report.results.append(self.run(self.create(server.base, probes)))
        if "transaction" in args.scenarios:
            report.results.append(self.run(self.transaction(server.base, probes)))
        report.slots_at_end = report.preloaded + sum(
            (r.requests + r.warmup_requests) * r.items_per_request
            for r in report.results
            if r.scenario in ("create", "transaction")
        )

    # -- data -------------------------------------------------------------------------------

    async def preload(self, base: str, report: EngineReport) -> list[str]:
        """N slots through sequential transaction bundles; returns their ids."""
        args = self.args
        rng = random.Random(args.seed)
        ids: list[str] = []
        client = loadgen.make_client(args.client, base, 1, args.timeout)
        started = time.perf_counter()
        try:
            with Progress(
                TextColumn(f"preloading slots ({report.engine})"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                console=console,
            ) as progress:
                task = progress.add_task("preload", total=args.preload, rate="")
                batches = -(-args.preload // args.preload_batch)
                for batch in range(batches):  # bounded: one request per batch
                    size = min(args.preload_batch, args.preload - len(ids))
                    body = slotgen.transaction_bytes(rng, len(ids), size)
                    status, data = await asyncio.wait_for(
                        client.request("POST", "/", body, (("Prefer", "return=minimal"),)),
                        args.timeout,
                    )
                    if status != 200:
                        raise RuntimeError(
                            f"preload batch {batch} failed: HTTP {status} {data[:500]!r}"
                        )
                    for entry in orjson.loads(data)["entry"]:
                        ids.append(entry["response"]["location"].split("/")[1])
                    elapsed = time.perf_counter() - started
                    progress.update(
                        task, completed=len(ids), rate=f"{len(ids) / elapsed:,.0f} slots/s"
                    )
        finally:
            await client.aclose()
        report.preloaded = len(ids)
        report.preload_seconds = time.perf_counter() - started
        return ids

    async def sample(self, base: str, ids: list[str]) -> bytes:
        """A stored slot as the server answers it (the constant baseline's body)."""
        client = loadgen.make_client(self.args.client, base, 1, self.args.timeout)
        try:
            if not ids:
                rng = random.Random(self.args.seed)
                status, data = await client.request("POST", "/Slot", slotgen.slot_bytes(rng, 0))
                if status != 201:
                    raise RuntimeError(f"cannot create a sample slot: HTTP {status} {data[:300]!r}")
                return data
            status, data = await client.request("GET", f"/Slot/{ids[len(ids) // 2]}")
            if status != 200:
                raise RuntimeError(f"cannot read a preloaded slot: HTTP {status} {data[:300]!r}")
            return data
        finally:
            await client.aclose()

    # -- scenarios --------------------------------------------------------------------------

    async def _load(self, base: str, load: loadgen.Load, probes: Probes) -> loadgen.Result:
        args = self.args
        client = loadgen.make_client(args.client, base, args.concurrency, args.timeout)
        status = f"{load.scenario}: {args.warmup:g} s warm-up + {args.duration:g} s"
        try:
            with console.status(status):
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

    def _spec(
        self, scenario: str, make: loadgen.MakeRequest, expect: int, check: Callable[[bytes], bool]
    ) -> loadgen.Load:
        return loadgen.Load(
            scenario,
            make,
            expect,
            check,
            concurrency=self.args.concurrency,
            request_timeout=self.args.timeout,
        )

    async def read(
        self, base: str, ids: list[str], probes: Probes, scenario: str, prefix: str
    ) -> loadgen.Result:
        """GET of random ids among the preloaded ones (the same sequence for read and constant)."""
        rng = random.Random(self.args.seed + 2)
        paths = [f"{prefix}{i}" for i in ids]

        def make(_n: int) -> loadgen.Request:
            return "GET", paths[rng.randrange(len(paths))], None, ()

        return await self._load(base, self._spec(scenario, make, 200, _is_slot), probes)

    async def create(self, base: str, probes: Probes) -> loadgen.Result:
        rng = random.Random(self.args.seed + 3)

        def make(n: int) -> loadgen.Request:
            return "POST", "/Slot", slotgen.slot_bytes(rng, 100_000_000 + n), ()

        return await self._load(base, self._spec("create", make, 201, _is_slot), probes)

    async def transaction(self, base: str, probes: Probes) -> loadgen.Result:
        rng = random.Random(self.args.seed + 4)
        size = self.args.bundle_size

        def make(n: int) -> loadgen.Request:
            body = slotgen.transaction_bytes(rng, 3_000_000_000 + n * size, size)
            return "POST", "/", body, ()

        spec = self._spec("transaction", make, 200, _is_transaction_response)
        result = await self._load(base, spec, probes)
        result.items_per_request = size
        return result


def _is_slot(data: bytes) -> bool:
    return data.startswith(b'{"resourceType":"Slot"')


def _is_transaction_response(data: bytes) -> bool:
    return b'"transaction-response"' in data[:400]


# -- output -----------------------------------------------------------------------------------


def _cpu(result: loadgen.Result, name: str) -> str:
    return f"{result.cpu[name] * 100:.0f}%" if name in result.cpu else "-"


ROW_HEADERS = (
    "engine",
    "scenario",
    "req/s",
    "slots written/s",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "errors",
    "requests",
    "server CPU",
    "DB CPU",
    "client CPU",
    "server CPU ms/req",
)


def rows(reports: list[EngineReport]) -> list[tuple[str, ...]]:
    out = []
    for report in reports:
        for r in report.results:
            written = r.scenario in ("create", "transaction")
            out.append(
                (
                    report.engine,
                    r.scenario,
                    f"{r.rate:,.1f}" if r.rate < 100 else f"{r.rate:,.0f}",
                    f"{r.rate * r.items_per_request:,.0f}" if written else "-",
                    f"{r.percentile(50):.1f}",
                    f"{r.percentile(95):.1f}",
                    f"{r.percentile(99):.1f}",
                    str(r.errors),
                    f"{r.requests:,}",
                    _cpu(r, "server"),
                    _cpu(r, "db"),
                    _cpu(r, "client"),
                    f"{r.cpu['server'] / r.rate * 1000:.2f}"
                    if r.rate and "server" in r.cpu
                    else "-",
                )
            )
    return out


def ratio_lines(reports: list[EngineReport]) -> list[str]:
    lines = []
    for report in reports:
        if report.ratio is not None:
            read, const = report.result("read"), report.result("constant")
            assert read is not None and const is not None
            verdict = "meets" if report.ratio >= 0.6 else "below"
            lines.append(
                f"{report.engine}: read {read.rate:,.0f} req/s / constant {const.rate:,.0f} req/s"
                f" = {report.ratio:.0%} ({verdict} the 60% goal)"
            )
    return lines


def print_results(reports: list[EngineReport]) -> None:
    table = Table(*ROW_HEADERS, title="FHIR REST benchmark")
    for row in rows(reports):
        table.add_row(*row)
    console.print(table)
    for line in ratio_lines(reports):
        console.print(f"read / constant  {line}")
    for report in reports:
        if report.skipped:
            console.print(f"[yellow]{report.engine} skipped:[/yellow] {report.skipped}")
        for r in report.results:
            if r.stopped_by != "time":
                console.print(
                    f"[yellow]{report.engine} {r.scenario} stopped by {r.stopped_by}[/yellow]"
                )
            for sample in r.error_samples:
                console.print(f"[red]{report.engine} {r.scenario} error:[/red] {sample}")


def doc_header(info: dict[str, str]) -> str:
    return f"""# Performance

Measured with `bench/rest.py` (see its docstring): the server runs as a real `fhir-server serve`
process (one uvicorn process) on 127.0.0.1, on SQLite (a temporary file, WAL) and on a throwaway
PostgreSQL cluster (default settings, so durable commits); the load generator is a closed loop
of concurrent keep-alive connections on the same machine, so it shares the CPUs with the server
(its CPU use is reported). Each run appends a section below; compare runs on the same machine.

`read / constant` compares `GET /Slot/{{id}}` with the same app answering a fixed body of a
stored slot's size without the database (`bench/constant_app.py`): the goal is read >= 60%.

Reading the tables: CPU columns are shares of one core over the measured seconds (the server
can exceed 100% on SQLite: aiosqlite runs queries in a thread); "server CPU ms/req" is the
server process's CPU time per request, the figure least disturbed by the load generator sharing
the machine. Latencies are those of a closed loop with `concurrency` requests in flight, so they
include queueing inside the server (a transaction waits for the ones ahead of it).

## Machine

| | |
| --- | --- |
| `nproc` | {info["nproc"]} |
| CPU | {info["cpu"]} |
| memory | {info["memory"]} |
| kernel | {info["kernel"]} |
| Python | {info["python"]} |
| PostgreSQL | {info["postgresql"]} |
| header written | {datetime.now(UTC):%Y-%m-%d %H:%M} UTC |
"""


def doc_section(
    args: argparse.Namespace,
    argv: list[str],
    reports: list[EngineReport],
    info: dict[str, str],
    total_seconds: float,
) -> str:
    command = shlex.join(["python", "bench/rest.py", *argv])
    lines = [
        "",
        f"## Run of {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"- command: `{command}` ({total_seconds:.0f} s in all)",
        f"- machine: {info['nproc']} CPUs ({info['cpu']}), {info['memory']},"
        f" Python {info['python']}, {info['postgresql']}, uvloop {info['uvloop']}",
        f"- load: client `{args.client}`, concurrency {args.concurrency},"
        f" {args.duration:g} s measured per scenario after {args.warmup:g} s of warm-up,"
        f" cap {args.max_requests:,} requests",
    ]
    for report in reports:
        if report.skipped:
            lines.append(f"- {report.engine}: skipped ({report.skipped})")
            continue
        rate = report.preloaded / report.preload_seconds if report.preload_seconds else 0
        lines.append(
            f"- data ({report.engine}): {report.preloaded:,} slots preloaded in transactions of"
            f" {args.preload_batch} ({rate:,.0f} slots/s);"
            f" a stored slot is {report.slot_bytes:,} bytes;"
            f" create bodies ~{report.create_body_bytes:,} bytes; transaction bundles of"
            f" {args.bundle_size} slots ~{report.bundle_bytes / 1024:,.0f} KiB;"
            f" {report.slots_at_end:,} slots at the end"
        )
    lines += ["", "| " + " | ".join(ROW_HEADERS) + " |", "|" + " --- |" * len(ROW_HEADERS)]
    lines += ["| " + " | ".join(row) + " |" for row in rows(reports)]
    ratios = ratio_lines(reports)
    if ratios:
        lines += ["", "Read vs constant baseline:", ""] + [f"- {line}" for line in ratios]
    errors = [(rep.engine, r) for rep in reports for r in rep.results if r.error_samples]
    if errors:
        lines += ["", "Errors (first samples):", ""]
        lines += [f"- {e} {r.scenario}: `{s}`" for e, r in errors for s in r.error_samples[:2]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    started = time.perf_counter()
    info = machine()
    reports = []
    try:
        import uvloop

        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        bench = Bench(args, runner)
        for engine in args.engines:
            console.rule(f"[bold]{engine}")
            reports.append(bench.engine(engine))
    print_results(reports)
    if not args.no_doc:
        args.doc.parent.mkdir(parents=True, exist_ok=True)
        existing = args.doc.read_text() if args.doc.exists() else ""
        text = existing if existing.strip() else doc_header(info)
        text = (
            text.rstrip("\n")
            + "\n"
            + doc_section(args, argv, reports, info, time.perf_counter() - started)
        )
        args.doc.write_text(text)
        console.print(f"appended to {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
