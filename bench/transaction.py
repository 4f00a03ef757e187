"""A transaction of 1,000 SAS Slots, validated and stored: wall time, with and without profiles.

Issue 5 asks for "a 1,000-entry transaction of SAS Slots validated and stored in < 1 s on
PostgreSQL" and for validation's share of the write cost. For each engine (a throwaway
PostgreSQL cluster started with initdb/pg_ctl and removed at the end; SQLite in a temporary
folder) this script starts two ``fhir-server serve`` processes on 127.0.0.1 over the same
database: one validating every write against the profiles it claims (the default) and one
with ``FHIR_VALIDATE_PROFILES=false`` (base R4 structure checks only, as on every write). It
then POSTs transaction Bundles of N ``POST Slot`` entries (``bench/sas_data.py`` slots:
``FrSlotAgregateur`` in ``meta.profile``, status ``free`` as that profile requires,
``urn:uuid:`` full URLs) to both servers in turn, one at a time, for ``--rounds`` rounds
(bounded by ``--max-seconds``), after one unmeasured warm-up each. Every Bundle holds new
slots. Printed per engine and mode: p50 and max wall time per transaction, slots/s at the
p50, server and database CPU per transaction; then validation's share of the write cost
(``(on - off) / on``, by wall time and by server CPU).

In process, the same N slots through the server's validator alone (the same packages and
settings as the server; best of 3) and through the base-R4 structure pass that runs on every
write, validation on or off.

Results are printed and appended to ``docs/perf.md``. A benchmark, not a test; nothing
fails on slow numbers; only 127.0.0.1 is contacted.

    python bench/transaction.py                          # N=1000, 10 rounds, both engines
    python bench/transaction.py --engines postgresql --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import loadgen
import orjson
import procs
import rest
import sas_data
import sas_load
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sas_search import machine_busy

from fhir_server import logging as fhir_logging
from fhir_server.app import make_validator
from fhir_server.settings import Settings
from fhir_server.validation.structure import structure_issues

HERE = Path(__file__).resolve().parent
DOC = HERE.parent / "docs" / "perf.md"
NOS = Path("/work/shared/reference/nos")  # loose NOS terminologies, when present
ENGINES = ("postgresql", "sqlite")
MODES = ("profiles", "no-profiles")  # FHIR_VALIDATE_PROFILES true / false
console = Console(width=None if sys.stdout.isatty() else 150)


# -- data -------------------------------------------------------------------------------------


def sas_slots(seed: int) -> Iterator[dict[str, Any]]:
    """Endless distinct SAS slots, as an agenda would POST them to the aggregator."""
    spec = sas_data.Spec(practitioners=1_000_000, seed=seed)
    for resource in sas_data.resources(spec):
        if resource["resourceType"] != "Slot":
            continue
        resource.pop("id")  # POST: the server assigns the id
        resource["status"] = "free"  # FrSlotAgregateur fixes it: the aggregator lists free slots
        yield resource


def bundle(slots: list[dict[str, Any]]) -> bytes:
    entries = [
        {
            "fullUrl": f"urn:uuid:{uuid.uuid4()}",
            "resource": s,
            "request": {"method": "POST", "url": "Slot"},
        }
        for s in slots
    ]
    return orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries})


# -- in process -------------------------------------------------------------------------------


@dataclass
class InProcess:
    profiles_s: float = 0.0  # the validator over N slots, best of 3
    structure_s: float = 0.0  # structure.structure_issues over N slots, best of 3
    errors: int = 0
    note: str = ""


def settings(package_path: Path) -> Settings:
    return Settings(
        package_path=package_path,
        terminology_paths=[NOS] if NOS.is_dir() else [],
        log_level="warning",
        auth="none",  # the in-process figure measures storage, not authentication
    )


def measure_in_process(slots: list[dict[str, Any]], package_path: Path) -> InProcess:
    out = InProcess()
    # Only errors: the servers log the same missing-package warnings at start-up.
    fhir_logging.configure("error")
    validator = make_validator(settings(package_path))
    if validator is None:
        out.note = "no validator (the R4 core package is not in the package cache)"
    for _ in range(3):
        if validator is not None:
            started = time.perf_counter()
            issues = [i for s in slots for i in validator.validate(s)]
            took = time.perf_counter() - started
            out.profiles_s = min(out.profiles_s or took, took)
            out.errors = sum(1 for i in issues if i.severity in ("error", "fatal"))
        started = time.perf_counter()
        for s in slots:
            structure_issues(s)
        took = time.perf_counter() - started
        out.structure_s = min(out.structure_s or took, took)
    return out


# -- over HTTP --------------------------------------------------------------------------------


@dataclass
class Sample:
    wall: float
    server_cpu: float
    db_cpu: float


@dataclass
class ModeReport:
    mode: str
    samples: list[Sample] = field(default_factory=list)

    def p50(self) -> float:
        return statistics.median(s.wall for s in self.samples)

    def worst(self) -> float:
        return max(s.wall for s in self.samples)

    def server_cpu(self) -> float:
        return statistics.median(s.server_cpu for s in self.samples)

    def db_cpu(self) -> float:
        return statistics.median(s.db_cpu for s in self.samples)


@dataclass
class EngineReport:
    engine: str
    modes: dict[str, ModeReport] = field(default_factory=dict)
    bundle_bytes: int = 0
    other_cpu: float = 0.0  # share of one core used by other processes while measuring
    skipped: str | None = None
    stopped_by: str = "rounds"

    def share(self, measure: str) -> float | None:
        """Profile validation's share of the write cost: (on - off) / on."""
        on, off = self.modes.get("profiles"), self.modes.get("no-profiles")
        if not on or not off or not on.samples or not off.samples:
            return None
        a, b = (on.p50(), off.p50()) if measure == "wall" else (on.server_cpu(), off.server_cpu())
        return (a - b) / a if a else None


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.slots = sas_slots(args.seed)
        self.schedules: set[str] = set()  # references of the Schedules stored so far

    def engine(self, engine: str, runner: asyncio.Runner) -> EngineReport:
        report = EngineReport(engine)
        self.schedules = set()  # a new database
        try:
            with ExitStack() as stack:
                self._engine(stack, report, runner)
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            report.skipped = f"failed: {exc}"
            console.print(f"[red]{engine} failed:[/red] {exc}")
        return report

    def _database(self, stack: ExitStack, engine: str, work: Path) -> tuple[str, int | None]:
        if engine == "sqlite":
            return f"sqlite+aiosqlite:///{work}/fhir.sqlite", None
        bin_dir = procs.pg_bin_dir()
        if bin_dir is None:
            raise RuntimeError("PostgreSQL binaries not found under /usr/lib/postgresql/*/bin")
        with console.status("starting a throwaway PostgreSQL cluster"):
            pg = stack.enter_context(procs.postgres(bin_dir))
        procs.migrate(pg.url, work)
        return pg.url, pg.postmaster_pid()

    def _engine(self, stack: ExitStack, report: EngineReport, runner: asyncio.Runner) -> None:
        args = self.args
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fhir-bench-tx-")))
        url, postmaster = self._database(stack, report.engine, work)
        if report.engine == "sqlite":  # create the schema once, before two servers share it
            subprocess.run(
                [*procs.fhir_server_command(), "migrate"],
                env={**os.environ, "FHIR_DATABASE_URL": url},
                check=True,
                capture_output=True,
                timeout=120,
                cwd=work,
            )
        base_env = {
            "FHIR_DATABASE_URL": url,
            "FHIR_PACKAGE_PATH": str(args.package_path),
            "FHIR_LOG_LEVEL": "warning",
            "FHIR_AUTH": "none",
        }
        if NOS.is_dir():
            base_env["FHIR_TERMINOLOGY_PATHS"] = orjson.dumps([str(NOS)]).decode()
        servers: dict[str, procs.Server] = {}
        for mode in MODES:
            env = {**base_env, "FHIR_VALIDATE_PROFILES": str(mode == "profiles").lower()}
            port = procs.free_port()
            with console.status(f"starting fhir-server ({report.engine}, {mode})"):
                servers[mode] = stack.enter_context(
                    procs.server(
                        procs.fhir_server_argv(port), env, work / f"server-{mode}.log", port=port
                    )
                )
            report.modes[mode] = ModeReport(mode)
        runner.run(self._check_modes(servers))

        def db_cpu() -> float:
            return procs.children_cpu_seconds(postmaster) if postmaster else 0.0

        total = args.rounds * len(MODES)
        deadline = time.monotonic() + args.max_seconds
        busy0, wall0 = machine_busy(), time.perf_counter()
        own0 = sum(procs.cpu_seconds(s.process.pid) for s in servers.values()) + db_cpu()
        client0 = time.process_time()
        with Progress(
            TextColumn(f"{report.engine}: transactions of {args.size:,} slots"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[last]}"),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            task = progress.add_task("tx", total=total, last="")
            for n in range(-1, args.rounds):  # round -1: warm-up, not measured
                if n >= 0 and time.monotonic() > deadline:
                    report.stopped_by = f"--max-seconds after {n} rounds"
                    break
                # Alternate which mode goes first, so neither always follows the other.
                order = MODES if n % 2 == 0 else MODES[::-1]
                for mode in order:
                    batch = list(itertools.islice(self.slots, args.size))
                    body = bundle(batch)
                    report.bundle_bytes = len(body)
                    server = servers[mode]
                    runner.run(self._schedules_for(server.base, batch))  # not measured
                    cpu0, db0 = procs.cpu_seconds(server.process.pid), db_cpu()
                    wall = runner.run(self._post(server.base, body))
                    sample = Sample(
                        wall, procs.cpu_seconds(server.process.pid) - cpu0, db_cpu() - db0
                    )
                    if n >= 0:
                        report.modes[mode].samples.append(sample)
                        progress.update(task, advance=1, last=f"{mode} {wall:.2f} s")
        elapsed = time.perf_counter() - wall0
        own = sum(procs.cpu_seconds(s.process.pid) for s in servers.values()) + db_cpu() - own0
        own += time.process_time() - client0
        report.other_cpu = max(0.0, machine_busy() - busy0 - own) / elapsed

    async def _post(self, base: str, body: bytes) -> float:
        client = loadgen.make_client(self.args.client, base, 1, self.args.timeout)
        try:
            headers = (("Prefer", f"return={self.args.prefer}"),)
            started = time.perf_counter()
            status, data = await asyncio.wait_for(
                client.request("POST", "/", body, headers), self.args.timeout
            )
            took = time.perf_counter() - started
        finally:
            await client.aclose()
        if status != 200 or data.count(b'"201 Created"') != self.args.size:
            raise RuntimeError(f"transaction failed: HTTP {status} {data[:500]!r}")
        return took

    async def _schedules_for(self, base: str, slots: list[dict[str, Any]]) -> None:
        """Store the Schedules the slots name (a write naming no stored Schedule is refused),
        as an agenda's Schedule exists before its slots are pushed."""
        wanted = {s["schedule"]["reference"] for s in slots} - self.schedules
        if not wanted:
            return
        entries = [
            {
                "resource": {
                    "resourceType": "Schedule",
                    "id": ref.split("/", 1)[1],
                    "actor": [{"display": "bench"}],
                },
                "request": {"method": "PUT", "url": ref},
            }
            for ref in sorted(wanted)
        ]
        body = orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries})
        client = loadgen.make_client(self.args.client, base, 1, self.args.timeout)
        try:
            status, data = await client.request("POST", "/", body)
        finally:
            await client.aclose()
        if status != 200:
            raise RuntimeError(f"storing the Schedules failed: HTTP {status} {data[:500]!r}")
        self.schedules |= wanted

    async def _check_modes(self, servers: dict[str, procs.Server]) -> None:
        """The validating server refuses a slot its profile forbids; the other stores it."""
        wrong = next(self.slots)
        wrong["status"] = "busy"  # FrSlotAgregateur fixes status to free
        body = bundle([wrong])
        await self._schedules_for(servers["no-profiles"].base, [wrong])
        for mode, expected in (("profiles", 422), ("no-profiles", 200)):
            client = loadgen.make_client(self.args.client, servers[mode].base, 1, 30)
            try:
                status, data = await client.request("POST", "/", body)
            finally:
                await client.aclose()
            if status != expected:
                raise RuntimeError(
                    f"{mode}: a busy FrSlotAgregateur slot answered {status}, not {expected}"
                    f" (is the SAS package in {self.args.package_path}?): {data[:300]!r}"
                )


# -- output -----------------------------------------------------------------------------------

HEADERS = (
    "engine",
    "validation",
    "transactions",
    "p50 s",
    "max s",
    "slots/s (p50)",
    "server CPU s/tx",
    "DB CPU s/tx",
)


def rows(reports: list[EngineReport], size: int) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for r in reports:
        for mode, m in r.modes.items():
            if not m.samples:
                continue
            out.append(
                (
                    r.engine,
                    "profiles + structure" if mode == "profiles" else "structure only",
                    str(len(m.samples)),
                    f"{m.p50():.3f}",
                    f"{m.worst():.3f}",
                    f"{size / m.p50():,.0f}",
                    f"{m.server_cpu():.3f}",
                    f"{m.db_cpu():.3f}" if r.engine == "postgresql" else "-",
                )
            )
    return out


def share_lines(reports: list[EngineReport], local: InProcess, size: int) -> list[str]:
    lines = []
    for r in reports:
        wall, cpu = r.share("wall"), r.share("cpu")
        on = r.modes.get("profiles")
        if wall is None or cpu is None or on is None:
            continue
        lines.append(
            f"{r.engine}: profile validation is {wall:.0%} of the transaction's wall time"
            f" ({on.p50() - r.modes['no-profiles'].p50():.3f} s of {on.p50():.3f} s) and"
            f" {cpu:.0%} of the server's CPU; goal < 1 s for {size:,} slots:"
            f" {'met' if on.p50() < 1.0 else 'not met'} at the p50"
        )
        if local.profiles_s or local.structure_s:
            lines.append(
                f"{r.engine}: in process, profiles {local.profiles_s:.3f} s"
                f" ({local.profiles_s / on.p50():.0%} of the p50) and base-R4 structure"
                f" {local.structure_s:.3f} s ({local.structure_s / on.p50():.0%}) for the"
                f" {size:,} slots"
            )
    return lines


def print_results(reports: list[EngineReport], local: InProcess, size: int) -> None:
    table = Table(*HEADERS, title=f"transaction of {size:,} SAS Slots")
    for row in rows(reports, size):
        table.add_row(*row)
    console.print(table)
    console.print(
        f"in process, {size:,} slots: validator {local.profiles_s:.3f} s"
        f" ({local.profiles_s / size * 1e6:.0f} µs each, {local.errors} errors),"
        f" structure pass {local.structure_s:.3f} s ({local.structure_s / size * 1e6:.0f} µs each)"
        + (f"; {local.note}" if local.note else "")
    )
    for line in share_lines(reports, local, size):
        console.print(line)
    for r in reports:
        if r.skipped:
            console.print(f"[yellow]{r.engine} skipped:[/yellow] {r.skipped}")
        console.print(f"{r.engine}: other processes used {r.other_cpu:.0%} of a core meanwhile")


def doc_section(
    args: argparse.Namespace,
    argv: list[str],
    reports: list[EngineReport],
    local: InProcess,
    seconds: float,
) -> str:
    info = rest.machine()
    lines = [
        "",
        f"## Transaction of {args.size:,} SAS Slots, run of {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"- command: `{shlex.join(['python', 'bench/transaction.py', *argv])}`"
        f" ({seconds:.0f} s in all)",
        f"- machine: {info['nproc']} CPUs ({info['cpu']}), {info['memory']},"
        f" Python {info['python']}, {info['postgresql']} (default settings), load average"
        f" {os.getloadavg()[0]:.1f} at the end; other processes used "
        + ", ".join(f"{r.engine} {r.other_cpu:.0%}" for r in reports)
        + " of a core during the measures (the machine is shared: compare ratios, not times)",
        f"- data: Bundles of {args.size:,} `POST Slot` entries (`bench/sas_data.py` slots,"
        f" `FrSlotAgregateur`, status free; ~{max(r.bundle_bytes for r in reports) / 1024:,.0f}"
        f" KiB), new slots each time, `Prefer: return={args.prefer}`, one at a time;"
        f" profiles from `{args.package_path}`"
        + (f" with the NOS folder `{NOS}`" if NOS.is_dir() else ""),
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|" + " --- |" * len(HEADERS),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows(reports, args.size)]
    lines += [
        "",
        f"In process, the same {args.size:,} slots: the profile validator"
        f" {local.profiles_s:.3f} s ({local.profiles_s / args.size * 1e6:.0f} µs per slot),"
        f" the base-R4 structure pass {local.structure_s:.3f} s"
        f" ({local.structure_s / args.size * 1e6:.0f} µs per slot; it runs on every write,"
        " profiles on or off). Validation's share of the write cost, `(on - off) / on`:",
        "",
    ]
    lines += [f"- {line}" for line in share_lines(reports, local, args.size)]
    for r in reports:
        if r.skipped:
            lines.append(f"- {r.engine}: skipped ({r.skipped})")
        elif r.stopped_by != "rounds":
            lines.append(f"- {r.engine}: stopped by {r.stopped_by}")
    return "\n".join(lines) + "\n"


# -- command line -----------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--engines", default=",".join(ENGINES), help="comma list of " + ",".join(ENGINES)
    )
    p.add_argument("--size", type=int, default=1000, help="slots per transaction")
    p.add_argument("--rounds", type=int, default=10, help="measured transactions per mode")
    p.add_argument("--max-seconds", type=float, default=300.0, help="time budget per engine")
    p.add_argument("--prefer", choices=("minimal", "representation"), default="minimal")
    p.add_argument("--package-path", type=Path, default=sas_load.package_path())
    p.add_argument("--client", choices=loadgen.CLIENTS, default="raw")
    p.add_argument("--timeout", type=float, default=120.0, help="per-request timeout (s)")
    p.add_argument("--seed", type=int, default=sas_data.DEFAULT_SEED)
    p.add_argument("--doc", type=Path, default=DOC)
    p.add_argument("--no-doc", action="store_true", help="print only")
    args = p.parse_args(argv)
    args.engines = [e for e in ENGINES if e in args.engines.split(",")]
    if not args.engines:
        p.error(f"--engines: choose among {','.join(ENGINES)}")
    if args.size < 1 or args.rounds < 1 or args.max_seconds <= 0:
        p.error("--size and --rounds at least 1, --max-seconds positive")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    started = time.perf_counter()
    bench = Bench(args)
    with console.status(f"validating {args.size:,} slots in process"):
        local = measure_in_process(
            list(itertools.islice(sas_slots(args.seed), args.size)), args.package_path
        )
    reports = []
    with asyncio.Runner() as runner:
        for engine in args.engines:
            console.rule(f"[bold]{engine}")
            reports.append(bench.engine(engine, runner))
    print_results(reports, local, args.size)
    if not args.no_doc:
        section = doc_section(args, argv, reports, local, time.perf_counter() - started)
        with args.doc.open("a") as doc:  # append only: other benches may write the file too
            doc.write(section)
        console.print(f"appended to {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
