"""SAS search benchmark: the PS slot search (INT_R01) at growing data sizes.

In one run, on a throwaway PostgreSQL cluster (``procs.py``) or, with ``--engine sqlite``, on
a SQLite file in a temporary folder, for each size of ``--slots`` (ascending; each size adds
practitioners to the previous one, ``sas_data.py``):

1. load the data set with ``sas_load.py`` (the server's write path, or ``--load-method copy``
   on PostgreSQL), take statistics (``VACUUM ANALYZE``; on SQLite the ``ANALYZE`` that
   ``fhir-server load`` and the server's start take), and measure table and index sizes;
2. start ``fhir-server serve`` (one uvicorn process; ``--workers 1,2`` for more) and drive a
   bounded closed loop (``loadgen.py``) of these scenarios:

   - ``ps``: the PS query exactly as the SAS platform sends it (NOTES.md §2.1): 5 random
     practitioners' RPPS numbers, a 72-hour window in Paris time without offset,
     ``_include=Slot:schedule&_include:iterate=Schedule:actor&status=free``;
   - ``ps-refs``: the same slots asked with ``schedule=Schedule/…`` references instead of the
     chained ``schedule.actor:Practitioner.identifier`` (what the chain costs);
   - ``ps-nocache``: the ``ps`` query on a second server started with the availability cache
     off (``FHIR_AVAILABILITY_CACHE_SLOTS=0``): the SQL search, the baseline of ``ps``;
   - ``ps-baseline`` (with ``--baseline DIR``): the ``ps`` query on a server run from another
     checkout (its own ``.venv``, e.g. the commit before a change) on the same database: the
     before/after comparison of one run;
   - ``constant``: the same app answering a ``ps`` response of mean size from memory
     (``constant_app.py``): the ceiling for HTTP, routing and JSON bytes of that size;

3. measure the bare SQL: the search interaction runs in process on sample queries (warm, then
   measured), every statement it sends is captured and re-run under
   ``EXPLAIN (ANALYZE, BUFFERS)`` (SQLite: re-run and timed, with its ``EXPLAIN QUERY PLAN``),
   with the availability cache (``ps``) and without (``ps-nocache``); the server's
   ``_explain=true`` answer is recorded too.

The servers preload the availability cache when they start (``FHIR_AVAILABILITY_PRELOAD``);
each measurement starts once every worker has logged "availability cache warm", and the
time that took is reported.

Results are printed and appended to ``docs/perf.md``. A benchmark, not a test; every loop is
bounded in time and count; only 127.0.0.1 is contacted.

    python bench/sas_search.py --slots 100000                        # ~3 minutes
    python bench/sas_search.py --slots 100000 --engine sqlite        # the embedded default
    python bench/sas_search.py --slots 100000,1000000 --workers 1,2 --load-method copy

``python bench/sas_search.py auth --slots 100000`` compares, in one run, the same PS query
with authentication off and on (a regulator's client certificate, the access policy's slot
label filter): see ``sas_auth.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shlex
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import loadgen
import orjson
import procs
import rest
import sas_data
import sas_load
from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
DOC = HERE.parent / "docs" / "perf.md"
SCENARIOS = ("ps", "ps-refs", "ps-nocache", "constant")
# served by a second server started with the availability cache off (the SQL search)
NOCACHE = "ps-nocache"
# served by a server of another checkout (--baseline): the same query, the code before a change
BASELINE = "ps-baseline"
RPPS = sas_data.RPPS_SYSTEM
console = Console(width=None if sys.stdout.isatty() else 160)
Probes = dict[str, Callable[[], float]]


# -- queries ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pick:
    practitioners: tuple[int, ...]
    low: datetime  # Paris wall-clock time, naive (the SAS platform sends no offset)
    high: datetime


def pick(spec: sas_data.Spec, rng: random.Random, count: int = 5, hours: int = 72) -> Pick:
    """``count`` distinct random practitioners and a window of ``hours`` inside the data."""
    chosen = tuple(rng.sample(range(spec.practitioners), min(count, spec.practitioners)))
    last_day = max(0, spec.days - hours // 24)
    day = spec.start + timedelta(days=rng.randrange(last_day + 1))
    low = datetime(day.year, day.month, day.day, rng.randrange(8, 18))
    return Pick(chosen, low, low + timedelta(hours=hours))


def _when(moment: datetime) -> str:
    return f"{moment:%Y-%m-%dT%H:%M:%S}"


def ps_query(spec: sas_data.Spec, p: Pick, extra: str = "") -> str:
    """The INT_R01 PS search, in the order of the guide's example (``|`` as ``%7C``)."""
    ids = ",".join(f"{RPPS}%7C{sas_data.rpps(spec, i)}" for i in p.practitioners)
    return (
        "/Slot?_include=Slot:schedule&_include:iterate=Schedule:actor"
        f"&start=ge{_when(p.low)}&start=le{_when(p.high)}"
        f"&schedule.actor:Practitioner.identifier={ids}&status=free{extra}"
    )


def ps_refs_query(spec: sas_data.Spec, p: Pick, extra: str = "") -> str:
    """The same slots through ``schedule`` references (no chain)."""
    refs = ",".join(
        f"Schedule/{s}" for i in p.practitioners for s in sas_data.schedule_ids_of(spec, i)
    )
    return (
        "/Slot?_include=Slot:schedule&_include:iterate=Schedule:actor"
        f"&start=ge{_when(p.low)}&start=le{_when(p.high)}"
        f"&schedule={refs}&status=free{extra}"
    )


QUERIES: dict[str, Callable[[sas_data.Spec, Pick, str], str]] = {
    BASELINE: ps_query,
    "ps": ps_query,
    "ps-refs": ps_refs_query,
    NOCACHE: ps_query,
}


def request_maker(
    spec: sas_data.Spec, scenario: str, seed: int, extra: str
) -> Callable[[int], loadgen.Request]:
    build = QUERIES[scenario]

    def make(n: int) -> loadgen.Request:
        rng = random.Random(seed * 1_000_003 + n)  # request n asks the same at every size
        return "GET", build(spec, pick(spec, rng), extra), None, ()

    return make


@dataclass
class Bodies:
    """What the answers looked like (sampled, bounded)."""

    sizes: list[int] = field(default_factory=list)
    matches: list[int] = field(default_factory=list)
    paged: int = 0  # answers with a next link (more matches than one page)
    limit: int = 200_000

    def check(self, data: bytes) -> bool:
        if not data.startswith(b'{"resourceType":"Bundle"'):
            return False
        if len(self.sizes) < self.limit:
            self.sizes.append(len(data))
            self.matches.append(data.count(b'"mode":"match"'))
            self.paged += b'"relation":"next"' in data
        return True


# -- one measured scenario ----------------------------------------------------------------------


@dataclass
class Measure:
    size: int  # requested slots
    workers: int
    scenario: str
    result: loadgen.Result | None = None
    bodies: Bodies = field(default_factory=Bodies)
    skipped: str | None = None


@dataclass
class SqlSample:
    query: str
    statements: int
    sql_ms: float  # planning + execution of every statement, from EXPLAIN ANALYZE
    interaction_ms: float  # the search interaction in process (no HTTP)
    plans: list[tuple[float, str]]  # per statement: ms, statement + EXPLAIN ANALYZE text


@dataclass
class SizeReport:
    size: int
    spec: sas_data.Spec
    slots: int = 0
    resources: int = 0
    load: list[sas_load.LoadReport] = field(default_factory=list)
    tables: list[sas_load.TableSize] = field(default_factory=list)
    measures: list[Measure] = field(default_factory=list)
    sql: dict[str, list[SqlSample]] = field(default_factory=dict)
    explain: str = ""  # the server's _explain=true answer for one ps query
    preload: dict[int, float] = field(default_factory=dict)  # workers -> seconds to warm
    settle: float = 0.0  # seconds from the end of the load to a quiet machine

    @property
    def load_seconds(self) -> float:
        return sum(r.seconds for r in self.load)

    @property
    def db_bytes(self) -> int:
        return sum(t.total for t in self.tables)


# -- EXPLAIN ANALYZE of what the search interaction sends ------------------------------------


async def sql_samples(url: str, queries: list[str], *, cache: bool = True) -> list[SqlSample]:
    """Run each query through the search interaction in process, capture its statements,
    and time them with ``EXPLAIN (ANALYZE, BUFFERS)``; ``cache=False``: without the
    availability cache (the SQL search)."""
    import dataclasses

    from sqlalchemy import event

    from fhir_server.core.errors import FhirError
    from fhir_server.interactions import search

    out = []
    async with sas_load.opened(url, migrate=False) as opened:
        searcher = dataclasses.replace(opened.search, availability=None)
        ctx = opened if cache else dataclasses.replace(opened, searcher=searcher)
        engine = ctx.store.engine  # type: ignore[attr-defined]
        # SQLite searches on their own engine; PostgreSQL's read engine shares the events
        engines = [engine, ctx.store.read_engine] if ctx.store.dialect == "sqlite" else [engine]  # type: ignore[attr-defined]
        captured: list[tuple[str, Any]] = []

        def capture(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
            captured.append((statement, params))

        for e in engines:
            event.listen(e.sync_engine, "before_cursor_execute", capture)
        # statements run with bind values go to asyncpg directly (storage/postgres.py)
        from fhir_server.storage import postgres

        direct = postgres.PostgresReadSession.fetch

        async def recording(self: Any, statement: Any, params: Any = None) -> Any:
            if params is not None:
                compiled = postgres._compiled(statement, self.conn.dialect)
                values = compiled.construct_params(params) or {}
                args = tuple(values[n] for n in compiled.positiontup or ())
                captured.append((compiled.string, args))
            return await direct(self, statement, params)

        postgres.PostgresReadSession.fetch = recording  # type: ignore[method-assign]
        try:
            for query in queries:
                path, _, raw = query.partition("?")
                req = search.SearchRequest(
                    path.strip("/"),
                    parse_qsl(raw, keep_blank_values=True),
                    "http://127.0.0.1",
                    raw_query=raw,
                )
                await search.search(ctx, req)  # warm (plans, caches), then measured
                captured.clear()
                started = time.perf_counter()
                try:
                    await search.search(ctx, req)
                except FhirError as exc:
                    raise RuntimeError(f"{query}: {exc}") from exc
                took = (time.perf_counter() - started) * 1000
                statements = list(captured)
                total, plans = 0.0, []
                if ctx.store.dialect == "sqlite":
                    total, plans = await _sqlite_timings(engines[-1], statements)
                    out.append(SqlSample(query, len(statements), total, took, plans))
                    continue
                async with engine.connect() as conn:
                    for statement, params in statements:
                        prefix = "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) "
                        result = await conn.exec_driver_sql(prefix + statement, params)
                        doc = result.scalar()
                        doc = orjson.loads(doc) if isinstance(doc, str | bytes) else doc
                        ms = doc[0]["Planning Time"] + doc[0]["Execution Time"]
                        total += ms
                        text = await conn.exec_driver_sql(
                            "EXPLAIN (ANALYZE, BUFFERS) " + statement, params
                        )
                        lines = "\n".join(r[0] for r in text.fetchall())
                        plans.append((ms, _shorten(statement) + "\n\n" + _shorten(lines)))
                out.append(SqlSample(query, len(statements), total, took, plans))
        finally:
            for e in engines:
                event.remove(e.sync_engine, "before_cursor_execute", capture)
            postgres.PostgresReadSession.fetch = direct  # type: ignore[method-assign]
    return out


async def _sqlite_timings(
    engine: Any, statements: list[tuple[str, Any]]
) -> tuple[float, list[tuple[float, str]]]:
    """SQLite has no EXPLAIN ANALYZE: each statement re-run and timed (rows fetched, through
    aiosqlite's thread as the server runs it; best of 3), with its EXPLAIN QUERY PLAN."""
    total, plans = 0.0, []
    async with engine.connect() as conn:
        for statement, params in statements:
            best = float("inf")
            for _ in range(3):
                started = time.perf_counter()
                (await conn.exec_driver_sql(statement, params)).fetchall()
                best = min(best, (time.perf_counter() - started) * 1000)
            total += best
            steps = await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params)
            depth: dict[int, int] = {0: -1}
            lines = []
            for node, parent, _, detail in steps.fetchall():
                depth[node] = depth.get(parent, -1) + 1
                lines.append("  " * depth[node] + str(detail))
            plans.append((best, _shorten(statement) + "\n\n" + "\n".join(lines)))
    return total, plans


# -- the run ----------------------------------------------------------------------------------

NO_CACHE_ENV = {"FHIR_AVAILABILITY_CACHE_SLOTS": "0"}
WARM_LINE = "availability cache warm"


def wait_warm(log: Path, workers: int, process: Any, timeout: float = 3600.0) -> float:
    """Seconds until every worker logged that its availability cache is warm."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        text = log.read_text(errors="replace") if log.exists() else ""
        if text.count(WARM_LINE) >= workers:
            return time.monotonic() - started
        if process.poll() is not None:
            raise RuntimeError(f"the server exited while warming up:\n{procs.tail(log)}")
        time.sleep(0.2)
    raise RuntimeError(f"no '{WARM_LINE}' from {workers} worker(s) in {timeout:.0f} s")


def constant_factory() -> Any:
    """uvicorn factory (``--workers``): the constant app answering ``SAS_BENCH_BODY``."""
    import constant_app

    from fhir_server.settings import Settings

    body = Path(os.environ["SAS_BENCH_BODY"]).read_bytes()
    return constant_app.constant_app(Settings(), body)


def serve_constant(port: int, workers: int) -> None:
    import uvicorn

    from fhir_server.settings import Settings

    settings = Settings()
    uvicorn.run(
        "sas_search:constant_factory",
        factory=True,
        host=procs.HOST,
        port=port,
        workers=workers if workers > 1 else None,
        app_dir=str(HERE),
        log_level=settings.log_level,
        access_log=False,
    )


class Bench:
    def __init__(self, args: argparse.Namespace, argv: list[str]) -> None:
        self.args = args
        self.argv = argv
        self.runner = asyncio.Runner(loop_factory=_loop_factory())

    def run(self, coro: Any) -> Any:
        return self.runner.run(coro)

    def all(self) -> list[SizeReport]:
        args = self.args
        reports: list[SizeReport] = []
        with ExitStack() as stack:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sas-search-")))
            self.pg: procs.Postgres | None = None
            if args.engine == "sqlite":
                self.url = f"sqlite+aiosqlite:///{work}/fhir.sqlite"
            else:
                bin_dir = procs.pg_bin_dir()
                if bin_dir is None:
                    raise SystemExit("PostgreSQL binaries not found under /usr/lib/postgresql")
                with console.status("starting a throwaway PostgreSQL cluster"):
                    self.pg = stack.enter_context(procs.postgres(bin_dir))
                self.url = self.pg.url
            self.run(self._migrate(self.url))
            loaded = 0  # practitioners already in the database
            for size in args.slots:
                console.rule(f"[bold]{size:,} slots")
                n = sas_data.practitioners_for(size, args.days, args.seed)
                spec = sas_data.Spec(practitioners=n, days=args.days, seed=args.seed)
                report = SizeReport(size, spec)
                reports.append(report)
                if n > loaded:
                    report.load.append(self.run(self._load(self.url, spec, loaded)))
                    sas_load.print_report(report.load[-1])
                    loaded = n
                report.slots = sas_data.count_slots(spec)
                report.resources = report.slots + sum(
                    1 + 2 * sas_data.practice(spec, i).places for i in range(n)
                )
                with console.status("statistics (ANALYZE) and table sizes"):
                    report.tables = self.run(self._sizes(self.url))
                console.print(sas_load.size_table(report.tables, report.slots))
                with console.status("checkpoint, sync, and waiting for a quiet machine"):
                    report.settle = self.run(self._settle(self.url))
                console.log(f"machine quiet after {report.settle:.0f} s")
                self._sql(report)
                for workers in args.workers:
                    self._serve_and_measure(stack, work, report, workers)
                self._print_size(report)
        return reports

    async def _migrate(self, url: str) -> None:
        async with sas_load.opened(url):
            pass

    async def _load(self, url: str, spec: sas_data.Spec, first: int) -> sas_load.LoadReport:
        args = self.args
        async with sas_load.opened(url, migrate=False) as ctx:
            return await sas_load.load(
                ctx,
                spec,
                method=args.load_method,
                batch=args.batch,
                jobs=args.jobs,
                first=first,
                engine=ctx.store.dialect,
            )

    async def _settle(self, url: str) -> float:
        """After a bulk load the kernel writes gigabytes back for minutes (and PostgreSQL
        checkpoints them): measurements taken meanwhile share the machine with it. Force
        both now, then wait until the machine is quiet; the seconds it took."""
        started = time.monotonic()
        if url.startswith("sqlite"):  # outside any transaction
            conn = sqlite3.connect(url.split("///", 1)[1])
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                conn.close()
        else:
            async with (
                sas_load.opened(url, migrate=False) as ctx,
                ctx.store.writing() as session,
            ):
                await session.conn.exec_driver_sql("CHECKPOINT")  # type: ignore[attr-defined]
        await asyncio.to_thread(os.sync)
        await wait_quiet()
        return time.monotonic() - started

    async def _sizes(self, url: str) -> list[sas_load.TableSize]:
        async with sas_load.opened(url, migrate=False) as ctx:
            if ctx.store.dialect == "sqlite":
                await ctx.store.optimize()
                return sqlite_sizes(url.split("///", 1)[1])
            return await sas_load.analyze_and_size(ctx)

    def _sql(self, report: SizeReport) -> None:
        args = self.args
        for scenario in ("ps", "ps-refs", NOCACHE):
            if scenario not in args.scenarios and not (
                scenario == "ps" and "constant" in args.scenarios
            ):
                continue
            make = request_maker(report.spec, scenario, args.seed, args.extra)
            queries = [make(2_000_000_000 + k)[1] for k in range(args.sql_samples)]
            try:
                with console.status(f"EXPLAIN ANALYZE of {scenario} ({len(queries)} queries)"):
                    report.sql[scenario] = self.run(
                        sql_samples(self.url, queries, cache=scenario != NOCACHE)
                    )
            except Exception as exc:  # a query the engine does not support yet
                console.print(f"[yellow]{scenario}: no SQL timing ({_short(exc)})[/yellow]")

    def _env(self) -> dict[str, str]:
        return {
            "FHIR_DATABASE_URL": self.url,
            "FHIR_PACKAGE_PATH": str(sas_load.package_path()),
            "FHIR_LOG_LEVEL": "info",  # "availability cache warm"
            # no per-request lines: this measures search, not logging (the access line costs
            # ~0.1 ms of server CPU per request, measured on its own in docs/perf.md)
            "FHIR_ACCESS_LOG": "true" if self.args.access_log else "false",
            "FHIR_AUTH": "none",
        }

    def _serve_and_measure(
        self, stack: ExitStack, work: Path, report: SizeReport, workers: int
    ) -> None:
        args = self.args
        sample_body = None
        ours = procs.fhir_server_command()
        variants = [
            ("cache", ["ps", "ps-refs"], {}, ours),
            ("nocache", [NOCACHE], NO_CACHE_ENV, ours),
        ]
        if args.baseline is not None:
            baseline = ("baseline", [BASELINE], {}, [str(args.baseline_command)])
            # measured first by default; --baseline-last shows what the order itself costs
            variants.insert(len(variants) if args.baseline_last else 0, baseline)
        for variant, scenarios, extra_env, command in variants:
            wanted = [
                s
                for s in scenarios
                if s in args.scenarios or (s == "ps" and "constant" in args.scenarios)
            ]
            if not wanted:
                continue
            port = procs.free_port()
            argv = [*command, *procs.fhir_server_argv(port)[len(ours) :]]
            if workers > 1:
                argv += ["--workers", str(workers)]
            label = f"fhir-server ({workers} worker{'s' if workers > 1 else ''}, {variant})"
            log = work / f"server-{workers}-{variant}.log"
            with ExitStack() as local:
                with console.status(f"starting {label}"):
                    env = {**self._env(), **extra_env}
                    server = local.enter_context(procs.server(argv, env, log, port=port))
                console.log(f"{label} ready on {server.base}")
                if variant in ("cache", "baseline"):
                    with console.status(f"{label}: preloading the availability cache"):
                        report.preload[workers] = wait_warm(log, workers, server.process)
                    console.log(f"availability cache warm in {report.preload[workers]:.1f} s")
                probes = self._probes(server.process.pid, workers)
                for scenario in wanted:
                    body = self._scenario(report, workers, scenario, server.base, probes)
                    if body is not None and (scenario == "ps" or sample_body is None):
                        sample_body = body
        if "constant" in args.scenarios:
            measure = Measure(report.size, workers, "constant")
            report.measures.append(measure)
            if sample_body is None:
                measure.skipped = "no search answer to copy"
                return
            self._constant(work, measure, sample_body, workers)

    def _scenario(
        self, report: SizeReport, workers: int, scenario: str, base: str, probes: Probes
    ) -> bytes | None:
        """Measure one scenario (when asked); returns a sample answer."""
        args = self.args
        measure = Measure(report.size, workers, scenario)
        report.measures.append(measure)
        make = request_maker(report.spec, scenario, args.seed, args.extra)
        probe = self.run(self._probe(base, make))
        if probe is not None:
            measure.skipped = probe
            console.print(f"[yellow]{scenario} skipped:[/yellow] {probe}")
            return None
        if scenario == "ps" and not report.explain:
            report.explain = self.run(self._explain(base, make))
        body: bytes = self.run(self._sample_body(base, make))
        if scenario in args.scenarios:
            measure.result = self.run(self._load_run(base, measure, make, probes))
        else:
            report.measures.remove(measure)
        return body

    def _constant(self, work: Path, measure: Measure, body: bytes, workers: int) -> None:
        body_file = work / "constant-body.json"
        body_file.write_bytes(body)
        port = procs.free_port()
        argv = [sys.executable, str(HERE / "sas_search.py"), "serve-constant"]
        argv += ["--port", str(port), "--workers", str(workers)]
        env = {**self._env(), "SAS_BENCH_BODY": str(body_file)}
        with ExitStack() as local:
            with console.status("starting the constant baseline"):
                const = local.enter_context(
                    procs.server(argv, env, work / f"constant-{workers}.log", port=port)
                )
            probes = self._probes(const.process.pid, workers)

            def make(_n: int) -> loadgen.Request:
                return "GET", "/__constant/sas-ps", None, ()

            measure.result = self.run(self._load_run(const.base, measure, make, probes))

    def _probes(self, pid: int, workers: int) -> Probes:
        pg = self.pg

        def db() -> float:
            postmaster = pg.postmaster_pid() if pg else None
            return procs.children_cpu_seconds(postmaster) if postmaster else 0.0

        server: Callable[[], float] = (
            (lambda: procs.children_cpu_seconds(pid))
            if workers > 1
            else (lambda: procs.cpu_seconds(pid))
        )
        probes = {"server": server, "db": db, "client": time.process_time, "machine": machine_busy}
        if pg is None:  # SQLite runs inside the server process
            del probes["db"]
        return probes

    async def _probe(self, base: str, make: Callable[[int], loadgen.Request]) -> str | None:
        """None when the query answers 200 with a Bundle, else why not."""
        client = loadgen.make_client(self.args.client, base, 1, self.args.timeout)
        try:
            _, path, _, _ = make(0)
            status, data = await client.request("GET", path)
        finally:
            await client.aclose()
        if status == 200 and data.startswith(b'{"resourceType":"Bundle"'):
            return None
        return f"HTTP {status}: {_diagnostics(data)}"

    async def _explain(self, base: str, make: Callable[[int], loadgen.Request]) -> str:
        client = loadgen.make_client(self.args.client, base, 1, self.args.timeout)
        try:
            status, data = await client.request("GET", make(0)[1] + "&_explain=true")
        finally:
            await client.aclose()
        if status != 200 or b"OperationOutcome" not in data[:200]:
            return f"(no _explain: HTTP {status})"
        return "\n".join(i.get("diagnostics", "") for i in orjson.loads(data).get("issue", []))

    async def _sample_body(self, base: str, make: Callable[[int], loadgen.Request]) -> bytes:
        """The real answer closest to the mean size of 41 (the constant baseline's body)."""
        client = loadgen.make_client(self.args.client, base, 1, self.args.timeout)
        bodies = []
        try:
            for k in range(41):
                status, data = await client.request("GET", make(3_000_000_000 + k)[1])
                if status == 200:
                    bodies.append(data)
        finally:
            await client.aclose()
        mean = statistics.mean(len(b) for b in bodies)
        return min(bodies, key=lambda b: abs(len(b) - mean))

    async def _load_run(
        self,
        base: str,
        measure: Measure,
        make: Callable[[int], loadgen.Request],
        probes: Probes,
    ) -> loadgen.Result:
        args = self.args
        load = loadgen.Load(
            measure.scenario,
            make,
            200,
            measure.bodies.check,
            concurrency=args.concurrency,
            request_timeout=args.timeout,
        )
        client = loadgen.make_client(args.client, base, args.concurrency, args.timeout)
        status = f"{measure.scenario}: {args.warmup:g} s warm-up + {args.duration:g} s"
        try:
            with console.status(status):
                result = await loadgen.run_load(
                    client,
                    load,
                    duration=args.duration,
                    max_requests=args.max_requests,
                    warmup=args.warmup,
                    cpu_probes=probes,
                )
        finally:
            await client.aclose()
        # the warm-up's answers were checked too: keep only the measured phase's bodies
        measured = result.requests
        if measured and len(measure.bodies.sizes) > measured:
            drop = len(measure.bodies.sizes) - measured
            del measure.bodies.sizes[:drop]
            del measure.bodies.matches[:drop]
        return result

    def _print_size(self, report: SizeReport) -> None:
        table = Table(*ROW_HEADERS, title=f"SAS search at {report.slots:,} slots")
        for row in measure_rows([report]):
            table.add_row(*row)
        console.print(table)
        for row in sql_rows([report]):
            console.print("SQL " + " | ".join(row))
        for w, sec in report.preload.items():
            console.print(f"availability cache preload, {w} worker(s): {sec:.1f} s")
        for m in report.measures:
            if m.result is not None:
                for sample in m.result.error_samples[:3]:
                    console.print(f"[red]{m.scenario} error:[/red] {sample}")


_LONG_LIST = re.compile(r"(\$\d+::\w+, )(?:\$\d+::\w+, )+(\$\d+::\w+\))")
_LONG_ARRAY = re.compile(r"'\{([^,}]+,[^,}]+),[^}]*,([^,}]+)\}'")


def _shorten(sql: str) -> str:
    """Long ``IN ($2, $3, … $134)`` lists and array literals cut to their ends."""
    sql = _LONG_LIST.sub(r"\1…, \2", sql)
    return _LONG_ARRAY.sub(r"'{\1,…,\2}'", sql)


def sqlite_sizes(path: str) -> list[sas_load.TableSize]:
    """Each table's rows and bytes (tables, their indexes) from SQLite's ``dbstat`` table,
    or the whole file when it is not compiled in."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [
            str(r[0])
            for r in conn.execute(
                "SELECT name FROM sqlite_schema WHERE type = 'table'"
                " AND name NOT LIKE 'sqlite_%' AND name <> 'alembic_version'"
            )
        ]
        try:
            pages = dict(conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name"))
            owner = dict(conn.execute("SELECT name, tbl_name FROM sqlite_schema"))
        except sqlite3.OperationalError:
            size = Path(path).stat().st_size
            return [sas_load.TableSize("(SQLite file, dbstat not available)", 0, size, 0)]
        out = []
        for table in tables:
            rows = int(conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0])
            index_bytes = sum(
                int(n) for name, n in pages.items() if owner.get(name) == table and name != table
            )
            out.append(sas_load.TableSize(table, rows, int(pages.get(table, 0)), index_bytes))
        return sorted(out, key=lambda t: -t.total)
    finally:
        conn.close()


async def wait_quiet(limit: float = 0.15, seconds: int = 3, patience: float = 300.0) -> None:
    """Until the machine's CPU use stays under ``limit`` of all cores for ``seconds`` (at
    most ``patience`` seconds)."""
    cores = os.cpu_count() or 1
    calm, deadline = 0, time.monotonic() + patience
    while calm < seconds and time.monotonic() < deadline:
        before = machine_busy()
        await asyncio.sleep(1.0)
        calm = calm + 1 if (machine_busy() - before) / cores < limit else 0


def machine_busy() -> float:
    """CPU seconds used on the whole machine (every process), from /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in fields[:7])
    return (user + nice + system + irq + softirq) / procs.CLOCK_TICKS


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _diagnostics(data: bytes) -> str:
    try:
        doc = orjson.loads(data)
        return "; ".join(i.get("diagnostics", "") for i in doc.get("issue", []))[:300]
    except orjson.JSONDecodeError:
        return repr(data[:300])


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__


# -- output ---------------------------------------------------------------------------------

ROW_HEADERS = (
    "slots",
    "workers",
    "scenario",
    "req/s",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "errors",
    "requests",
    "answer KiB",
    "slots/answer",
    "server CPU",
    "DB CPU",
    "client CPU",
    "other CPU",
)


def _cpu(result: loadgen.Result, name: str) -> str:
    return f"{result.cpu[name] * 100:.0f}%" if name in result.cpu else "-"


def _other_cpu(result: loadgen.Result) -> str:
    """Machine CPU not used by the server, the database or the load generator: other
    processes on a shared machine (a disturbed measurement shows here)."""
    if "machine" not in result.cpu:
        return "-"
    ours = sum(result.cpu.get(k, 0.0) for k in ("server", "db", "client"))
    return f"{max(0.0, result.cpu['machine'] - ours) * 100:.0f}%"


def measure_rows(reports: list[SizeReport]) -> list[tuple[str, ...]]:
    out = []
    for rep in reports:
        for m in rep.measures:
            r = m.result
            if r is None:
                out.append(
                    (f"{rep.slots:,}", str(m.workers), m.scenario, f"skipped: {m.skipped}")
                    + ("",) * (len(ROW_HEADERS) - 4)
                )
                continue
            sizes, matches = m.bodies.sizes, m.bodies.matches
            answer = f"{statistics.mean(sizes) / 1024:,.1f}" if sizes else "-"
            slots = f"{statistics.mean(matches):.1f}" if m.scenario != "constant" else "-"
            out.append(
                (
                    f"{rep.slots:,}",
                    str(m.workers),
                    m.scenario,
                    f"{r.rate:,.0f}",
                    f"{r.percentile(50):.1f}",
                    f"{r.percentile(95):.1f}",
                    f"{r.percentile(99):.1f}",
                    str(r.errors),
                    f"{r.requests:,}",
                    answer,
                    slots if matches else "-",
                    _cpu(r, "server"),
                    _cpu(r, "db"),
                    _cpu(r, "client"),
                    _other_cpu(r),
                )
            )
    return out


SQL_HEADERS = (
    "slots",
    "query",
    "samples",
    "statements",
    "SQL ms p50",
    "SQL ms max",
    "in-process search ms p50",
)


def sql_rows(reports: list[SizeReport]) -> list[tuple[str, ...]]:
    out = []
    for rep in reports:
        for scenario, samples in rep.sql.items():
            if not samples:
                continue
            out.append(
                (
                    f"{rep.slots:,}",
                    scenario,
                    str(len(samples)),
                    str(samples[0].statements),
                    f"{statistics.median(s.sql_ms for s in samples):.2f}",
                    f"{max(s.sql_ms for s in samples):.2f}",
                    f"{statistics.median(s.interaction_ms for s in samples):.2f}",
                )
            )
    return out


def doc_section(
    args: argparse.Namespace, argv: list[str], reports: list[SizeReport], seconds: float
) -> str:
    info = _machine()
    command = shlex.join(["python", "bench/sas_search.py", *argv])
    first = reports[0].spec if reports else None
    lines = [
        "",
        f"## SAS search run of {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"- command: `{command}` ({seconds:.0f} s in all)",
        f"- machine: {info}",
        "- engine: "
        + (
            f"SQLite {sqlite3.sqlite_version} (a file in /tmp, WAL; ANALYZE after the load)"
            if args.engine == "sqlite"
            else "PostgreSQL (a throwaway cluster, default settings)"
        ),
        f"- load: client `{args.client}`, concurrency {args.concurrency},"
        f" {args.duration:g} s measured per scenario after {args.warmup:g} s of warm-up,"
        f" cap {args.max_requests:,} requests; the load generator shares the machine;"
        f" servers {'with' if args.access_log else 'without'} access lines (`FHIR_ACCESS_LOG`)",
    ]
    if first is not None:
        lines.append(
            f"- data (`bench/sas_data.py`): {first.days} days from {first.start}"
            f" (includes the DST change of 2027-03-28), 15-minute slots,"
            f" {first.free:.0%} free, seed {first.seed}; each practitioner has 1 or 2"
            " PractitionerRoles (contained Location) and one Schedule per role"
        )
    lines.append(
        "- query `ps`: `GET /Slot?_include=Slot:schedule&_include:iterate=Schedule:actor"
        "&start=ge<T>&start=le<T+72h>&schedule.actor:Practitioner.identifier="
        f"{RPPS}%7C8…(×5)&status=free{args.extra}` with 5 random practitioners and a random"
        " 72 h window per request; `ps-refs` asks the same slots with"
        " `schedule=Schedule/…` instead of the chain; `ps-nocache` is `ps` on a second"
        " server with the availability cache off (the SQL search: the baseline of `ps`);"
        " `constant` answers a `ps` answer of mean size from memory through the same app"
        " (`bench/constant_app.py`)"
        + (
            f"; `ps-baseline` is `ps` on a server of the checkout `{args.baseline}`"
            " (the code before the change), on the same database"
            if args.baseline is not None
            else ""
        )
    )
    lines.append(
        "- after each load: `CHECKPOINT` (SQLite: `wal_checkpoint`), `sync`, then a wait until"
        " the machine's CPU use stays"
        " under 15% for 3 s (the kernel writes the load back for minutes): "
        + "; ".join(f"{rep.slots:,} slots: {rep.settle:.0f} s" for rep in reports)
    )
    lines.append(
        "- the servers with the cache preload it at start; measurements begin once every"
        " worker has logged it warm: "
        + (
            "; ".join(
                f"{rep.slots:,} slots, {w} worker{'s' if w > 1 else ''}: {sec:.1f} s"
                for rep in reports
                for w, sec in rep.preload.items()
            )
            or "no preload measured"
        )
    )
    lines.append(
        "- CPU columns: shares of one core over the measured seconds (server processes,"
        " PostgreSQL backends, the load generator); `other CPU` is the rest of the machine's"
        " busy time, other processes on a shared machine: a disturbed row shows it"
    )
    lines += [
        "",
        "| slots | practitioners | resources | load | load s | slots/s | DB size MiB |"
        " MiB per M slots |",
        "|" + " --- |" * 8,
    ]
    for rep in reports:
        loads = ", ".join(
            f"{r.method} (batches of {r.batch}, {r.jobs} job{'s' if r.jobs > 1 else ''})"
            for r in rep.load
        )
        rate = sum(r.slots for r in rep.load) / rep.load_seconds if rep.load_seconds else 0
        lines.append(
            f"| {rep.slots:,} | {rep.spec.practitioners:,} | {rep.resources:,} |"
            f" {loads or '(previous size)'} | {rep.load_seconds:,.0f} |"
            f" {rate:,.0f} | {rep.db_bytes / 2**20:,.0f} |"
            f" {rep.db_bytes / 2**20 / (rep.slots / 1e6):,.0f} |"
        )
    lines += ["", "| " + " | ".join(ROW_HEADERS) + " |", "|" + " --- |" * len(ROW_HEADERS)]
    lines += ["| " + " | ".join(row) + " |" for row in measure_rows(reports)]
    rows = sql_rows(reports)
    if rows:
        lines += [
            "",
            "Bare SQL: every statement the search interaction sends for a sample query, re-run"
            + (
                " and timed (best of 3, rows fetched; summed per query)"
                if args.engine == "sqlite"
                else " under `EXPLAIN (ANALYZE, BUFFERS)` (planning + execution, summed per query)"
            )
            + "; the in-process search is the interaction without HTTP.",
            "",
            "| " + " | ".join(SQL_HEADERS) + " |",
            "|" + " --- |" * len(SQL_HEADERS),
        ]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
    paged = [
        (rep, m) for rep in reports for m in rep.measures if m.bodies.paged and m.result is not None
    ]
    for rep, m in paged:
        lines.append(
            f"\nNote: {m.bodies.paged:,} `{m.scenario}` answers at {rep.slots:,} slots had a"
            " `next` link (more matches than the default page size)."
        )
    errors = [(rep, m) for rep in reports for m in rep.measures if m.result and m.result.errors]
    if errors:
        lines += ["", "Errors (first samples):", ""]
        lines += [f"- {m.scenario}: `{s}`" for _, m in errors for s in m.result.error_samples[:2]]  # type: ignore[union-attr]
    last = reports[-1] if reports else None
    if last is not None and (last.explain or last.sql):
        lines += ["", f"<details><summary>Query plans at {last.slots:,} slots</summary>", ""]
        if last.explain:
            lines += ["`_explain=true` (the server's own explanation of `ps`):", "", "```text"]
            lines += [last.explain, "```", ""]
        for scenario, samples in last.sql.items():
            if samples and any(s.plans for s in samples):
                median = sorted(samples, key=lambda s: s.sql_ms)[len(samples) // 2]
                costly = max(median.plans, key=lambda p: p[0])
                others = ", ".join(f"{ms:.2f}" for ms, _ in median.plans)
                lines += [
                    f"`{scenario}` sample of median SQL time ({median.sql_ms:.2f} ms:"
                    f" {len(median.plans)} statements of {others} ms): `{median.query}`;"
                    f" its costliest statement ({costly[0]:.2f} ms):",
                    "",
                    "```text",
                    costly[1],
                    "```",
                    "",
                ]
        lines.append("</details>")
    return "\n".join(lines) + "\n"


def _machine() -> str:
    info = rest.machine()
    pg = info["postgresql"] if info["postgresql"] != "not installed" else "no PostgreSQL"
    return (
        f"{info['nproc']} CPUs ({info['cpu']}), {info['memory']},"
        f" Python {info['python']}, {pg} (default settings), disk {_disk_free()} free"
    )


def _disk_free() -> str:
    st = os.statvfs("/tmp")
    return f"{st.f_bavail * st.f_frsize / 2**30:,.0f} GiB"


# -- command line -----------------------------------------------------------------------------


def _ints(text: str) -> list[int]:
    return sorted({int(float(x)) for x in text.split(",") if x.strip()})


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--slots", type=_ints, default=[100_000], help="data sizes, e.g. 1e5,1e6")
    p.add_argument("--engine", choices=("postgresql", "sqlite"), default="postgresql")
    p.add_argument("--days", type=int, default=sas_data.DEFAULT_DAYS)
    p.add_argument("--seed", type=int, default=sas_data.DEFAULT_SEED)
    p.add_argument("--workers", type=_ints, default=[1], help="server processes, e.g. 1,2")
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help=",".join(SCENARIOS))
    p.add_argument("--load-method", choices=sas_load.METHODS, default="server")
    p.add_argument("--batch", type=int, default=2000, help="resources per load transaction")
    p.add_argument("--jobs", type=int, default=2, help="load transactions at once")
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per scenario")
    p.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds first")
    p.add_argument("--max-requests", type=int, default=100_000, help="cap per scenario")
    p.add_argument("--timeout", type=float, default=30.0, help="per-request timeout (s)")
    p.add_argument("--client", choices=loadgen.CLIENTS, default="raw")
    p.add_argument("--sql-samples", type=int, default=15, help="queries timed with EXPLAIN")
    p.add_argument(
        "--extra", default="", help="appended to every query, e.g. '&_count=1000' (default none)"
    )
    p.add_argument(
        "--baseline",
        type=Path,
        help="another checkout (with its .venv) whose server answers ps-baseline",
    )
    p.add_argument(
        "--baseline-last", action="store_true", help="measure ps-baseline after the others"
    )
    p.add_argument(
        "--access-log", action="store_true", help="servers write one access line per request"
    )
    p.add_argument("--doc", type=Path, default=DOC)
    p.add_argument("--no-doc", action="store_true", help="print only")
    args = p.parse_args(argv)
    args.scenarios = [s for s in (*SCENARIOS, BASELINE) if s in args.scenarios.split(",")]
    if args.baseline is not None:
        args.baseline_command = args.baseline.resolve() / ".venv" / "bin" / "fhir-server"
        if not args.baseline_command.exists():
            p.error(f"--baseline: {args.baseline_command} not found (run scripts/_setup.sh there)")
        if BASELINE not in args.scenarios:
            args.scenarios.insert(0, BASELINE)
    if not args.scenarios or not args.slots or not args.workers:
        p.error("--scenarios, --slots and --workers need at least one value")
    if min(args.slots) < 1000 or min(args.workers) < 1 or args.duration <= 0:
        p.error("--slots at least 1000, --workers at least 1, --duration positive")
    if args.extra and not args.extra.startswith("&"):
        p.error("--extra must start with '&'")
    if args.engine == "sqlite" and (args.workers != [1] or args.load_method == "copy"):
        p.error("--engine sqlite serves with one worker and loads with the server's path")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["auth"]:  # the access policy's cost: auth off vs on (sas_auth.py)
        import sas_auth

        return sas_auth.main(argv[1:])
    if argv[:1] == ["serve-constant"]:
        sub = argparse.ArgumentParser(prog="sas_search.py serve-constant")
        sub.add_argument("--port", type=int, required=True)
        sub.add_argument("--workers", type=int, default=1)
        opts = sub.parse_args(argv[1:])
        serve_constant(opts.port, opts.workers)
        return 0
    args = parse_args(argv)
    started = time.perf_counter()
    bench = Bench(args, argv)
    try:
        reports = bench.all()
    finally:
        bench.runner.close()
    if not args.no_doc and reports:
        text = args.doc.read_text() if args.doc.exists() else "# Performance\n"
        section = doc_section(args, argv, reports, time.perf_counter() - started)
        args.doc.write_text(text.rstrip("\n") + "\n" + section)
        console.print(f"appended to {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
