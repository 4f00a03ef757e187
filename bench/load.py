"""``fhir-server load`` against the server's transaction path: the same resources, into SQLite.

The issue asks that ``fhir-server load`` into SQLite be at least as fast as the server's
transaction path. In one run, on the same data (``bench/sas_data.py``: practitioners, their
roles and schedules, then their slots; every slot free, as ``FrSlotAgregateur`` requires, so
that profile validation passes), each into a fresh SQLite file in a temporary folder:

1. ``load``: the real command, ``fhir-server load <folder>`` on NDJSON files of ``--batch``
   resources each (one transaction per file). Its wall time minus its start-up (the same
   command on a one-resource file, measured first), so both figures count writes only;
2. ``transaction``: a real ``fhir-server serve`` process on 127.0.0.1, the same resources
   sent as transaction Bundles of ``--batch`` ``PUT Type/id`` entries, one after the other
   (``Prefer: return=minimal``), from the first request to the last answer.

Both validate every resource against the profiles it claims (``FHIR_PACKAGE_PATH``, the NOS
folder when present). Prints resources/s of both and appends them to ``docs/perf.md``. A
benchmark, not a test: nothing fails on slow numbers; every loop is bounded by the data set;
only 127.0.0.1 is contacted.

    python bench/load.py                       # 6,000 resources, files/Bundles of 1,000
    python bench/load.py --resources 20000 --batch 2000
"""

from __future__ import annotations

import argparse
import itertools
import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import procs
import rest
import sas_data
import sas_load
from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
DOC = HERE.parent / "docs" / "perf.md"
NOS = Path("/work/shared/reference/nos")  # loose NOS terminologies, when present
console = Console(width=None if sys.stdout.isatty() else 150)
Resource = dict[str, Any]


def resources(count: int, seed: int) -> list[Resource]:
    """The first ``count`` resources of the SAS data set, in order (a practitioner's role
    and schedules before its slots), every slot free."""
    spec = sas_data.Spec(practitioners=1_000_000, seed=seed)
    out = []
    for resource in itertools.islice(sas_data.resources(spec), count):
        if resource["resourceType"] == "Slot":
            resource["status"] = "free"
        out.append(resource)
    return out


def chunks(items: list[Resource], size: int) -> list[list[Resource]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def env(url: str, package_path: Path) -> dict[str, str]:
    out = {
        "FHIR_DATABASE_URL": url,
        "FHIR_PACKAGE_PATH": str(package_path),
        "FHIR_LOG_LEVEL": "warning",
        "FHIR_AVAILABILITY_PRELOAD": "false",
    }
    if NOS.is_dir():
        out["FHIR_TERMINOLOGY_PATHS"] = orjson.dumps([str(NOS)]).decode()
    return out


@dataclass
class Figure:
    path: str
    resources: int
    seconds: float
    note: str = ""

    @property
    def rate(self) -> float:
        return self.resources / self.seconds if self.seconds else 0.0


def run_load(work: Path, data: list[Resource], args: argparse.Namespace) -> Figure:
    """``fhir-server load`` of NDJSON files of ``--batch`` resources, start-up subtracted."""
    folder = work / "files"
    folder.mkdir()
    for n, chunk in enumerate(chunks(data, args.batch)):
        (folder / f"{n:05d}.ndjson").write_bytes(b"\n".join(orjson.dumps(r) for r in chunk))
    one = work / "one.ndjson"
    one.write_bytes(orjson.dumps(data[0]))

    def command(target: Path, database: str) -> float:
        started = time.perf_counter()
        done = subprocess.run(
            [*procs.fhir_server_command(), "load", str(target)],
            env={**os.environ, **env(f"sqlite+aiosqlite:///{work}/{database}", args.package_path)},
            capture_output=True,
            text=True,
            timeout=args.max_seconds,
            cwd=work,
        )
        took = time.perf_counter() - started
        if done.returncode:
            raise RuntimeError(f"fhir-server load failed:\n{done.stderr[-2000:]}")
        return took

    with console.status("fhir-server load: start-up alone (one resource)"):
        start_up = command(one, "startup.sqlite")
    with console.status(f"fhir-server load: {len(data):,} resources"):
        total = command(folder, "load.sqlite")
    return Figure(
        "`fhir-server load`",
        len(data),
        total - start_up,
        f"{total:.1f} s in all, start-up {start_up:.1f} s subtracted",
    )


def run_transactions(work: Path, data: list[Resource], args: argparse.Namespace) -> Figure:
    """Transaction Bundles of ``--batch`` ``PUT`` entries to a ``fhir-server serve``."""
    port = procs.free_port()
    log = work / "server.log"
    server_env = env(f"sqlite+aiosqlite:///{work}/server.sqlite", args.package_path)
    bodies = [
        orjson.dumps(
            {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [
                    {
                        "resource": r,
                        "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
                    }
                    for r in chunk
                ],
            }
        )
        for chunk in chunks(data, args.batch)
    ]
    headers = {"Content-Type": "application/fhir+json", "Prefer": "return=minimal"}
    with (
        console.status("fhir-server serve: starting"),
        procs.server(procs.fhir_server_argv(port), server_env, log, port=port) as server,
        httpx.Client(base_url=server.base, timeout=args.max_seconds, trust_env=False) as client,
    ):
        started = time.perf_counter()
        for n, body in enumerate(bodies):
            if n % 10 == 9:
                console.log(f"transaction {n + 1}/{len(bodies)}")
            answer = client.post("/", content=body, headers=headers)
            if answer.status_code != 200:
                raise RuntimeError(f"transaction failed: HTTP {answer.status_code} {answer.text}")
            if time.perf_counter() - started > args.max_seconds:
                raise RuntimeError(f"over --max-seconds ({args.max_seconds:g} s)")
        took = time.perf_counter() - started
    return Figure("transactions over HTTP", len(data), took, f"{len(bodies)} Bundles")


def by_type(data: list[Resource]) -> str:
    counts: dict[str, int] = {}
    for r in data:
        counts[r["resourceType"]] = counts.get(r["resourceType"], 0) + 1
    return ", ".join(f"{n:,} {t}" for t, n in counts.items())


def doc_section(
    args: argparse.Namespace, argv: list[str], data: list[Resource], figures: list[Figure]
) -> str:
    info = rest.machine()
    load, tx = figures
    lines = [
        "",
        f"## `fhir-server load` and transactions into SQLite, run of"
        f" {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"- command: `{shlex.join(['python', 'bench/load.py', *argv])}`",
        f"- machine: {info['nproc']} CPUs ({info['cpu']}), {info['memory']},"
        f" Python {info['python']}; load average {os.getloadavg()[0]:.1f} at the end (shared"
        " machine: compare the two rows, not runs)",
        f"- data: {len(data):,} resources of `bench/sas_data.py` ({by_type(data)}; slots free),"
        f" in files / transaction Bundles of {args.batch:,} resources (`PUT Type/id`),"
        f" validated against the profiles of `{args.package_path}`; each into a fresh SQLite"
        " file",
        "",
        "| path | resources | seconds | resources/s | note |",
        "| --- | --- | --- | --- | --- |",
    ]
    for f in figures:
        lines.append(f"| {f.path} | {f.resources:,} | {f.seconds:.1f} | {f.rate:,.0f} | {f.note} |")
    lines += ["", f"`load` / transactions: {load.rate / tx.rate:.2f}x" if tx.rate else ""]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--resources", type=int, default=6000, help="resources loaded each way")
    p.add_argument("--batch", type=int, default=1000, help="resources per file / Bundle")
    p.add_argument("--seed", type=int, default=sas_data.DEFAULT_SEED)
    p.add_argument("--package-path", type=Path, default=sas_load.package_path())
    p.add_argument("--max-seconds", type=float, default=600.0, help="budget per way")
    p.add_argument("--doc", type=Path, default=DOC)
    p.add_argument("--no-doc", action="store_true", help="print only")
    args = p.parse_args(argv)
    if args.resources < 1 or args.batch < 1:
        p.error("--resources and --batch must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    data = resources(args.resources, args.seed)
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        work = Path(tmp)
        (work / "load").mkdir()
        (work / "tx").mkdir()
        figures = [run_load(work / "load", data, args), run_transactions(work / "tx", data, args)]
    table = Table("path", "resources", "seconds", "resources/s", "note")
    for f in figures:
        table.add_row(f.path, f"{f.resources:,}", f"{f.seconds:.1f}", f"{f.rate:,.0f}", f.note)
    console.print(table)
    if not args.no_doc:
        text = args.doc.read_text() if args.doc.exists() else "# Performance\n"
        args.doc.write_text(text.rstrip("\n") + "\n" + doc_section(args, argv, data, figures))
        console.print(f"appended to {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
