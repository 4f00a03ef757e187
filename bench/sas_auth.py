"""What the access policy costs the SAS PS slot search: auth off vs auth on, in one run.

``python bench/sas_search.py auth`` (this module) loads the SAS data set (``sas_data``,
``sas_load``), then measures the PS query (``sas_search.ps_query``, the same random
practitioners and windows on both sides) twice over:

1. **HTTP**: two real ``fhir-server serve`` processes on 127.0.0.1, both speaking TLS with the
   same server certificate, both with the availability cache preloaded: ``off``
   (``FHIR_AUTH=none``: an anonymous admin, no filter) and ``on`` (``FHIR_AUTH=on``, a client
   certificate required and mapped by the allow-list to the **regulator** role: the mTLS
   identity, the policy's checks, the slot label filter). The client presents the same
   certificate to both over keep-alive connections, so the TLS cost is the same on both sides;
   rounds alternate off / on so that noise from other processes falls on both.
2. **In process**: the search interaction called directly for an admin context and for a
   regulator's (``ctx.acting_for``), with the availability cache, then without it (the SQL
   search with the label where-clause), interleaved rounds.

The figure is the ratio of throughputs, on / off (target ≥ 0.90). Printed, and appended to
``docs/perf.md`` (with the "current figures" line). Bounded: every loop stops at its
request count or its time limit, whichever comes first; only 127.0.0.1 is contacted.

    python bench/sas_search.py auth --slots 100000                   # PostgreSQL
    python bench/sas_search.py auth --slots 100000 --engine sqlite
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import loadgen
import procs
import sas_data
import sas_load

from auth import devcerts
from fhir_server.availability import agendas
from fhir_server.availability.search import AvailabilitySearch
from fhir_server.core.caller import Caller
from fhir_server.interactions.context import Context
from fhir_server.interactions.search import SearchRequest, search
from fhir_server.search.execute import Searcher

REGULATOR_CN = "regulation-bench"
REGULATOR = Caller(role="regulator", client_id=REGULATOR_CN)
TARGET = 0.90


@dataclass
class Side:
    """One side's measured requests and seconds, over every round."""

    requests: int = 0
    seconds: float = 0.0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def p99_ms(self) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


@dataclass
class Comparison:
    name: str
    off: Side
    on: Side

    @property
    def ratio(self) -> float:
        return self.on.rate / self.off.rate if self.off.rate else 0.0


# -- certificates and servers -----------------------------------------------------------------


@dataclass(frozen=True)
class Certs:
    ca: Path
    server: tuple[Path, Path]
    client: tuple[Path, Path]


def write_certs(directory: Path) -> Certs:
    directory.mkdir(parents=True, exist_ok=True)
    ca = devcerts.new_ca()
    (directory / "ca.pem").write_bytes(devcerts.pem(ca.cert))
    server = (directory / "server.pem", directory / "server.key")
    devcerts.server_cert(ca).write(*server)
    client = (directory / "client.pem", directory / "client.key")
    devcerts.client_cert(ca, REGULATOR_CN, "SAS").write(*client)
    return Certs(directory / "ca.pem", server, client)


def client_context(certs: Certs) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(certs.ca))
    context.load_cert_chain(str(certs.client[0]), str(certs.client[1]))
    return context


@contextmanager
def tls_server(
    name: str, env: dict[str, str], work: Path, certs: Certs
) -> Iterator[tuple[str, float]]:
    """``fhir-server serve`` over TLS on 127.0.0.1; yields its base URL once its cache is warm
    (and the seconds that took)."""
    from sas_search import wait_warm

    port = procs.free_port()
    log = work / f"server-{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            procs.fhir_server_argv(port),
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=work,
        )
    try:
        warm = wait_warm(log, 1, process, timeout=1800)
        base = f"https://127.0.0.1:{port}"
        context = client_context(certs)
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.get(f"{base}/metadata", verify=context, timeout=2.0, trust_env=False)
                if r.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"{name} server not ready:\n{procs.tail(log)}")
            time.sleep(0.2)
        yield base, warm
    finally:
        procs.stop(process)


def server_env(url: str, certs: Certs, auth: bool) -> dict[str, str]:
    env = {
        "FHIR_DATABASE_URL": url,
        "FHIR_PACKAGE_PATH": str(sas_load.package_path()),
        "FHIR_LOG_LEVEL": "info",  # "availability cache warm"
        "FHIR_ACCESS_LOG": "false",
        "FHIR_TLS_CERT_FILE": str(certs.server[0]),
        "FHIR_TLS_KEY_FILE": str(certs.server[1]),
        "FHIR_AUTH": "on" if auth else "none",
    }
    if auth:
        env["FHIR_TLS_CLIENT_CA_FILE"] = str(certs.ca)
        rule = {"cn": REGULATOR_CN, "ou": "SAS", "client_id": REGULATOR_CN, "role": "regulator"}
        env["FHIR_CLIENT_CERTIFICATES"] = json.dumps([rule])
    return env


# -- load -------------------------------------------------------------------------------------


def queries(spec: sas_data.Spec, seed: int, count: int) -> list[str]:
    from sas_search import pick, ps_query

    return [ps_query(spec, pick(spec, random.Random(seed * 1_000_003 + n))) for n in range(count)]


class TlsStreamClient(loadgen.StreamClient):
    """``loadgen``'s raw keep-alive client (httptools) over TLS with a client certificate:
    the cheapest client, so the server, not the client, sets the pace."""

    def __init__(self, base: str, context: ssl.SSLContext) -> None:
        parts = urlsplit(base)
        super().__init__(f"http://{parts.hostname}:{parts.port}", "raw")
        self.context = context

    async def _connection(self) -> Any:
        if self._idle:
            return self._idle.pop()
        reader, writer = await asyncio.open_connection(self.host, self.port, ssl=self.context)
        return loadgen._Connection(reader, writer)


async def http_round(
    base: str,
    context: ssl.SSLContext,
    paths: list[str],
    side: Side,
    *,
    concurrency: int,
    seconds: float,
) -> None:
    """A closed loop of ``concurrency`` clients over ``paths`` (each once at most), for at
    most ``seconds``."""
    client = TlsStreamClient(base, context)
    try:
        load = loadgen.Load(
            "ps",
            make=lambda n: ("GET", paths[n % len(paths)], None, ()),
            expect=200,
            concurrency=concurrency,
        )
        result = await loadgen.run_load(client, load, duration=seconds, max_requests=len(paths))
    finally:
        await client.aclose()
    side.requests += result.requests
    side.errors += result.errors
    side.seconds += result.elapsed
    side.latencies += result.latencies


async def same_answers(bases: dict[str, str], context: ssl.SSLContext, paths: list[str]) -> None:
    """Both servers give the same matches (every bench slot is PUBLIC: the regulator sees all
    of them), so the comparison compares the same work."""
    async with httpx.AsyncClient(verify=context, timeout=30.0, trust_env=False) as client:
        for path in paths:
            found = []
            for base in bases.values():
                r = await client.get(base + path, headers={"Accept": "application/fhir+json"})
                r.raise_for_status()
                entries = r.json().get("entry", [])
                found.append(
                    sorted((e["resource"]["resourceType"], e["resource"]["id"]) for e in entries)
                )
            if found[0] != found[1]:
                raise RuntimeError(f"auth off and on answer differently: {path}")


async def in_process_round(ctx: Context, paths: list[str], side: Side, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    started = time.perf_counter()
    for path in paths:
        if time.monotonic() > deadline:
            break
        query = urlsplit(path)
        req = SearchRequest("Slot", parse_qsl(query.query, keep_blank_values=True), "https://x")
        t0 = time.perf_counter()
        await search(ctx, req)
        side.latencies.append(time.perf_counter() - t0)
        side.requests += 1
    side.seconds += time.perf_counter() - started


async def in_process(
    url: str, paths: list[str], rounds: int, seconds: float, cache: bool
) -> Comparison:
    async with sas_load.opened(url, migrate=False) as admin:
        if not cache:
            admin = Context(
                store=admin.store,
                registry=admin.registry,
                timezone=admin.timezone,
                searcher=Searcher(admin.registry, admin.timezone, 1000, 5000),
            )
        else:
            assert isinstance(admin.search.availability, AvailabilitySearch)
            await agendas.preload(admin.store, admin.search.availability)
        regulator = admin.acting_for(REGULATOR)
        off, on = Side(), Side()
        await in_process_round(admin, paths[:50], Side(), seconds)  # warm
        await in_process_round(regulator, paths[:50], Side(), seconds)
        for r in range(rounds):
            chunk = paths[r * len(paths) // rounds : (r + 1) * len(paths) // rounds]
            await in_process_round(admin, chunk, off, seconds)
            await in_process_round(regulator, chunk, on, seconds)
    name = "in process, availability cache" if cache else "in process, SQL (cache off)"
    return Comparison(name, off, on)


# -- the run ----------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> tuple[list[Comparison], dict[str, Any]]:
    from sas_search import wait_quiet

    info: dict[str, Any] = {}
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sas-auth-")))
        if args.engine == "sqlite":
            url = f"sqlite+aiosqlite:///{work}/fhir.sqlite"
        else:
            bin_dir = procs.pg_bin_dir()
            if bin_dir is None:
                raise SystemExit("PostgreSQL binaries not found under /usr/lib/postgresql")
            url = stack.enter_context(procs.postgres(bin_dir)).url
        spec = sas_data.Spec(
            practitioners=sas_data.practitioners_for(args.slots, args.days, args.seed),
            days=args.days,
            seed=args.seed,
        )
        started = time.monotonic()
        asyncio.run(_load(url, spec))
        info["load_s"] = time.monotonic() - started
        info["slots"] = sas_data.count_slots(spec)
        certs = write_certs(work / "certs")
        paths = queries(spec, args.seed, args.requests)
        comparisons: list[Comparison] = []
        busy_before = _load_average()
        with (
            tls_server("off", server_env(url, certs, False), work, certs) as (off_base, off_warm),
            tls_server("on", server_env(url, certs, True), work, certs) as (on_base, on_warm),
        ):
            info["warm_s"] = (off_warm, on_warm)
            context = client_context(certs)
            asyncio.run(same_answers({"off": off_base, "on": on_base}, context, paths[:20]))
            asyncio.run(wait_quiet(patience=60))
            off, on = Side(), Side()
            for r in range(args.rounds):
                chunk = paths[r * len(paths) // args.rounds : (r + 1) * len(paths) // args.rounds]
                for base, side in ((off_base, off), (on_base, on)):
                    asyncio.run(
                        http_round(
                            base,
                            context,
                            chunk,
                            side,
                            concurrency=args.concurrency,
                            seconds=args.seconds,
                        )
                    )
            comparisons.append(Comparison("HTTP over TLS (raw client), 1 worker, cache", off, on))
        for cache in (True, False):
            comparisons.append(
                asyncio.run(in_process(url, paths, args.rounds, args.seconds, cache))
            )
        info["load_avg"] = (busy_before, _load_average())
    return comparisons, info


async def _load(url: str, spec: sas_data.Spec) -> None:
    async with sas_load.opened(url) as ctx:
        await sas_load.load(
            ctx, spec, method="server", batch=2000, jobs=2, engine=ctx.store.dialect
        )


def _load_average() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return 0.0


def report(args: argparse.Namespace, comparisons: list[Comparison], info: dict[str, Any]) -> str:
    now = datetime.now(UTC)
    lines = [
        "",
        f"## Access policy cost on the SAS PS search, run of {now:%Y-%m-%d %H:%M} UTC",
        "",
        f"`python bench/sas_search.py auth --slots {args.slots} --engine {args.engine}"
        f" --rounds {args.rounds} --seconds {args.seconds:g} --concurrency {args.concurrency}`:"
        f" {info['slots']:,} slots ({args.engine}), loaded in {info['load_s']:.0f} s; caches"
        f" warm in {info['warm_s'][0]:.1f} / {info['warm_s'][1]:.1f} s. Auth **off**: an"
        " anonymous admin (`FHIR_AUTH=none`); auth **on**: a client certificate mapped to the"
        " regulator role (mTLS identity, the policy's checks, slots filtered by their TRE-R314"
        " labels; every bench slot is PUBLIC, so both answer the same matches). Load average"
        f" {info['load_avg'][0]:.2f} before, {info['load_avg'][1]:.2f} after (another helper"
        " ran tests on this 2-core machine).",
        "",
        "| path | off | on | on / off |",
        "| --- | --- | --- | --- |",
    ]
    for c in comparisons:
        unit = "req/s" if c.name.startswith("HTTP") else "searches/s"
        lines.append(
            f"| {c.name} | {c.off.rate:,.0f} {unit}, p99 {c.off.p99_ms():.1f} ms"
            f" ({c.off.requests:,} in {c.off.seconds:.1f} s) | {c.on.rate:,.0f} {unit},"
            f" p99 {c.on.p99_ms():.1f} ms ({c.on.requests:,} in {c.on.seconds:.1f} s,"
            f" {c.on.errors} errors) | **{c.ratio:.2f}** |"
        )
    return "\n".join(lines) + "\n"


def current_line(args: argparse.Namespace, comparisons: list[Comparison]) -> str:
    http, cached = comparisons[0], comparisons[1]
    return (
        f"| SAS PS search with the access policy, {args.engine}, {args.slots // 1000} k slots,"
        f" 1 worker, TLS | auth on (regulator certificate) {http.on.rate:,.0f} req/s:"
        f" **{http.ratio:.2f}x** of auth off; in process {cached.ratio:.2f}x (cache),"
        f" {comparisons[2].ratio:.2f}x (SQL) | auth off (anonymous admin) {http.off.rate:,.0f}"
        f" req/s, same run | `python bench/sas_search.py auth --slots {args.slots}"
        f" --engine {args.engine}` | {datetime.now(UTC):%Y-%m-%d} |"
    )


def update_doc(doc: Path, section: str, line: str) -> None:
    text = doc.read_text() if doc.exists() else "# Performance\n"
    marker = "| SAS PS search with the access policy"
    kept = [row for row in text.splitlines() if not row.startswith(marker)]
    out: list[str] = []
    inserted = False
    for i, row in enumerate(kept):
        out.append(row)
        following = kept[i + 1] if i + 1 < len(kept) else ""
        table_end = row.startswith("| ") and not following.startswith("| ")
        # the end of the "current figures" table (its header names "benchmark")
        if not inserted and table_end and "benchmark" in "\n".join(kept[max(0, i - 12) : i]):
            out.append(line)
            inserted = True
    doc.write_text("\n".join(out).rstrip("\n") + "\n" + section)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="sas_search.py auth", description=__doc__.splitlines()[0])
    p.add_argument("--slots", type=int, default=100_000)
    p.add_argument("--engine", choices=("postgresql", "sqlite"), default="postgresql")
    p.add_argument("--days", type=int, default=sas_data.DEFAULT_DAYS)
    p.add_argument("--seed", type=int, default=sas_data.DEFAULT_SEED)
    p.add_argument("--rounds", type=int, default=3, help="off/on alternations")
    p.add_argument("--seconds", type=float, default=5.0, help="longest round per side")
    p.add_argument("--requests", type=int, default=30_000, help="queries in all (cap)")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument(
        "--doc", type=Path, default=Path(__file__).resolve().parent.parent / "docs" / "perf.md"
    )
    p.add_argument("--no-doc", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    comparisons, info = run(args)
    section = report(args, comparisons, info)
    print(section)
    if not args.no_doc:
        update_doc(args.doc, section, current_line(args, comparisons))
        print(f"appended to {args.doc}")
    worst = min(c.ratio for c in comparisons)
    print(f"lowest on/off ratio {worst:.2f} (target {TARGET:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
