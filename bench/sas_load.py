"""Bulk-load the SAS data set (``sas_data.py``) into PostgreSQL or SQLite, fast.

Three ways to write, all producing the same rows:

- ``server`` (default): the server's own write path, in process: one ``store.writing()``
  session per batch and, per resource, ``write_version`` (stamp id/meta, ``index_resource``,
  ``session.put``) exactly as update-as-create does on an empty database (the lookup of a
  previous version is skipped: ids are new). ``--validate`` adds the REST API's structural
  check (``check_body``) of every resource; the first batch is always checked.
- ``transaction``: the transaction interaction (``transaction.process``) with one Bundle of
  ``PUT Type/id`` entries per batch: the full server path minus HTTP (validation, lookup of
  the previous version with ``SELECT ... FOR UPDATE``, response bundle).
- ``copy`` (PostgreSQL only, bench only): the same ``stamp`` + ``index_resource`` functions
  compute the rows, primary keys come from the table's sequence in one query per batch, and
  ``COPY`` writes resources, history and index rows (asyncpg ``copy_records_to_table``).
  ``--check-copy`` loads a small data set both ways into two databases and compares every row
  (primary keys and timestamps aside).

``--jobs`` runs that many batches at once (their own transactions and connections): the
server path waits on one database round trip per resource, which concurrency overlaps.

    python bench/sas_load.py --slots 100000                       # throwaway PostgreSQL
    python bench/sas_load.py --slots 1000000 --method copy --jobs 2
    python bench/sas_load.py --slots 20000 --database sqlite      # temporary SQLite file
    python bench/sas_load.py --check-copy                          # copy == server rows
    python bench/sas_load.py --slots 20000 --profile /tmp/load.prof

Every loop is bounded by the data set's size; a throwaway cluster listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import itertools
import pstats
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import procs
import sas_data
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from auth.policy import slot_labels
from fhir_server import logging as fhir_logging
from fhir_server.app import make_context, make_store
from fhir_server.core.fhirtime import format_instant, utcnow
from fhir_server.interactions import transaction
from fhir_server.interactions._resource import check_body, stamp, write_version
from fhir_server.interactions.context import Context
from fhir_server.search.indexing.indexer import index_resource
from fhir_server.settings import Settings
from fhir_server.storage import schema

METHODS = ("server", "transaction", "copy")
console = Console(width=None if sys.stdout.isatty() else 150, stderr=True)


def package_path() -> Path:
    """Where the server finds the SAS package (its ``Slot`` search parameters change the
    index rows): ``FHIR_PACKAGE_PATH``, else the shared reference packages when present."""
    path = procs.package_env().get("FHIR_PACKAGE_PATH")
    return Path(path) if path else Settings().package_path


def settings_for(url: str) -> Settings:
    # A bulk load in concurrent batches (--jobs): a Slot's Schedule may be in a batch not yet
    # committed, as with `fhir-server load --no-check-references`; the numbers stay comparable.
    return Settings(
        database_url=url,
        package_path=package_path(),
        log_level="warning",
        referential_integrity=False,
        auth="none",  # a load as the server's own work: no client to authenticate
    )


# -- batches ----------------------------------------------------------------------------------

Resource = dict[str, Any]


def batches(resources: Iterator[Resource], size: int) -> Iterator[list[Resource]]:
    while chunk := list(itertools.islice(resources, size)):
        yield chunk


@dataclass
class LoadReport:
    method: str
    engine: str
    spec: sas_data.Spec
    batch: int
    jobs: int
    validate: bool
    resources: int = 0
    slots: int = 0
    seconds: float = 0.0
    by_type: dict[str, int] = field(default_factory=dict)

    @property
    def slots_per_second(self) -> float:
        return self.slots / self.seconds if self.seconds else 0.0

    @property
    def resources_per_second(self) -> float:
        return self.resources / self.seconds if self.seconds else 0.0


# -- the three writers ------------------------------------------------------------------------


async def write_server(ctx: Context, chunk: list[Resource], validate: bool) -> None:
    """The server's write path: one write session, ``write_version`` per resource."""
    async with ctx.store.writing() as session:
        for resource in chunk:
            res_type = resource["resourceType"]
            if validate:
                check_body(res_type, resource)
            await write_version(
                ctx,
                session,
                resource,
                res_type=res_type,
                res_id=resource["id"],
                previous=None,
                method="PUT",
            )


async def write_transaction(ctx: Context, chunk: list[Resource], validate: bool) -> None:
    """The transaction interaction with ``PUT Type/id`` entries (validates every entry)."""
    entries = [
        {
            "fullUrl": f"{BASE}/{r['resourceType']}/{r['id']}",
            "resource": r,
            "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
        }
        for r in chunk
    ]
    body = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    await transaction.process(ctx, body, BASE, return_resources=False)


BASE = "http://127.0.0.1/fhir"
_COLUMNS = {name: [c.name for c in t.columns] for name, t in schema.metadata.tables.items()}
_SEQUENCE_SQL = (
    "SELECT nextval(pg_get_serial_sequence('resources', 'pk')) FROM generate_series(1, $1)"
)


def copy_rows(
    ctx: Context, chunk: list[Resource], pks: list[int]
) -> dict[str, list[tuple[Any, ...]]]:
    """The rows the server would write for ``chunk`` (as update-as-create), by table."""
    tables: dict[str, list[tuple[Any, ...]]] = {"resources": [], "history": []}
    for resource, pk in zip(chunk, pks, strict=True):
        res_type, res_id = resource["resourceType"], resource["id"]
        now = utcnow()  # as write_version: one instant per resource
        content = stamp(resource, res_id, 1, format_instant(now, ctx.timezone))
        index = index_resource(ctx.registry, orjson.loads(content))
        row = {
            "pk": pk,
            "res_pk": pk,
            "res_type": res_type,
            "res_id": res_id,
            "version": 1,
            "last_updated": now,
            "deleted": False,
            "content": content,
            "method": "PUT",
            "owner": None,  # loaded by the server itself (auth/policy.py)
            "labels": slot_labels(resource),
        }
        tables["resources"].append(tuple(row[c] for c in _COLUMNS["resources"]))
        tables["history"].append(tuple(row[c] for c in _COLUMNS["history"]))
        for kind, rows in index.items():
            table = schema.INDEX_TABLES[kind].name
            columns = _COLUMNS[table]
            out = tables.setdefault(table, [])
            for r in rows:
                full = {**r, "res_pk": pk, "res_type": res_type}
                out.append(tuple(full.get(c) for c in columns))
    return tables


async def write_copy(ctx: Context, chunk: list[Resource], validate: bool) -> None:
    """PostgreSQL ``COPY`` of the rows the server path would write (bench only)."""
    if validate:
        for resource in chunk:
            check_body(resource["resourceType"], resource)
    engine = ctx.store.engine  # type: ignore[attr-defined]
    async with engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        async with raw.transaction():
            pks = [r[0] for r in await raw.fetch(_SEQUENCE_SQL, len(chunk))]
            rows = copy_rows(ctx, chunk, pks)
            # Parents first: history and index rows reference resources.pk.
            for table, records in rows.items():
                if records:
                    await raw.copy_records_to_table(table, records=records, columns=_COLUMNS[table])


WRITERS: dict[str, Callable[[Context, list[Resource], bool], Any]] = {
    "server": write_server,
    "transaction": write_transaction,
    "copy": write_copy,
}


# -- the loader -------------------------------------------------------------------------------


@contextmanager
def load_progress(total_slots: int, label: str) -> Iterator[Callable[[int, int], None]]:
    """A progress bar over slots with the current slots/s; yields ``advance(slots, resources)``."""
    started = time.perf_counter()
    done = {"slots": 0, "resources": 0}
    with Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("slots"),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    ) as progress:
        task: TaskID = progress.add_task(label, total=total_slots, rate="")

        def advance(slots: int, resources: int) -> None:
            done["slots"] += slots
            done["resources"] += resources
            elapsed = time.perf_counter() - started
            progress.update(
                task,
                completed=done["slots"],
                rate=f"{done['slots'] / elapsed:,.0f} slots/s"
                f" ({done['resources'] / elapsed:,.0f} resources/s)",
            )

        yield advance


async def load(
    ctx: Context,
    spec: sas_data.Spec,
    *,
    method: str = "server",
    batch: int = 2000,
    jobs: int = 1,
    validate: bool = False,
    engine: str = "postgresql",
    show_progress: bool = True,
    first: int = 0,
) -> LoadReport:
    """Write practitioners ``first``.. of the data set (all by default) with their schedules
    and slots; ``jobs`` batches in flight, each its own transaction."""
    if method == "copy" and ctx.store.dialect != "postgresql":
        raise ValueError("--method copy needs PostgreSQL")
    writer = WRITERS[method]
    report = LoadReport(method, engine, spec, batch, jobs, validate)
    total = sas_data.count_slots(spec, first)
    chunks = batches(sas_data.resources(spec, first), batch)
    checked = False

    async def worker(advance: Callable[[int, int], None]) -> None:
        nonlocal checked
        for chunk in chunks:  # shared iterator: each batch goes to one worker
            check = validate or not checked  # always check the first batch
            checked = True
            await writer(ctx, chunk, check)
            slots = 0
            for r in chunk:
                report.by_type[r["resourceType"]] = report.by_type.get(r["resourceType"], 0) + 1
                slots += r["resourceType"] == "Slot"
            report.resources += len(chunk)
            report.slots += slots
            advance(slots, len(chunk))

    label = f"{method} → {engine}"
    started = time.perf_counter()
    with ExitStack() as stack:
        advance = (
            stack.enter_context(load_progress(total, label))
            if show_progress
            else (lambda _s, _r: None)
        )
        await asyncio.gather(*(worker(advance) for _ in range(max(1, jobs))))
    report.seconds = time.perf_counter() - started
    return report


# -- sizes --------------------------------------------------------------------------------------


@dataclass
class TableSize:
    name: str
    rows: int
    table_bytes: int  # heap + TOAST
    index_bytes: int

    @property
    def total(self) -> int:
        return self.table_bytes + self.index_bytes


_SIZES_SQL = """
SELECT c.relname, pg_table_size(c.oid), pg_indexes_size(c.oid)
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname <> 'alembic_version'
ORDER BY pg_total_relation_size(c.oid) DESC
"""


async def analyze_and_size(ctx: Context) -> list[TableSize]:
    """``VACUUM ANALYZE`` (fresh statistics for the planner), then each table's size."""
    engine = ctx.store.engine  # type: ignore[attr-defined]
    async with engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        await raw.execute("VACUUM ANALYZE")
        out = []
        for name, table_bytes, index_bytes in await raw.fetch(_SIZES_SQL):
            rows = await raw.fetchval(f'SELECT count(*) FROM "{name}"')
            out.append(TableSize(name, rows, table_bytes, index_bytes))
    return out


def size_table(sizes: list[TableSize], slots: int) -> Table:
    table = Table("table", "rows", "table MiB", "index MiB", "total MiB", "MiB per M slots")
    for s in [*sizes, TableSize("all", sum(x.rows for x in sizes), 0, 0)]:
        if s.name == "all":
            table_bytes = sum(x.table_bytes for x in sizes)
            index_bytes = sum(x.index_bytes for x in sizes)
        else:
            table_bytes, index_bytes = s.table_bytes, s.index_bytes
        total = table_bytes + index_bytes
        table.add_row(
            s.name,
            f"{s.rows:,}",
            f"{table_bytes / 2**20:,.1f}",
            f"{index_bytes / 2**20:,.1f}",
            f"{total / 2**20:,.1f}",
            f"{total / 2**20 / (slots / 1e6):,.0f}" if slots else "-",
        )
    return table


# -- databases ------------------------------------------------------------------------------


@asynccontextmanager
async def opened(url: str, *, migrate: bool = True) -> Any:
    """A store and an interaction context on ``url`` (schema migrated first)."""
    settings = settings_for(url)
    fhir_logging.configure(settings.log_level, settings.log_format)
    store = make_store(settings)
    try:
        if migrate:
            await store.migrate()
        yield make_context(settings, store)
    finally:
        await store.close()


async def create_database(pg: procs.Postgres, name: str) -> str:
    """Another database in the throwaway cluster; its SQLAlchemy URL."""
    import asyncpg

    conn = await asyncpg.connect(host=procs.HOST, port=pg.port, user="postgres", database="fhir")
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return pg.url.rsplit("/", 1)[0] + f"/{name}"


# -- copy == server -------------------------------------------------------------------------


async def table_dump(ctx: Context) -> dict[str, list[tuple[Any, ...]]]:
    """Every row with pks replaced by (type, id) and time stamps dropped, sorted."""
    engine = ctx.store.engine  # type: ignore[attr-defined]
    out: dict[str, list[tuple[Any, ...]]] = {}
    async with engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        for name, columns in _COLUMNS.items():
            if name == "alembic_version":
                continue
            keep = [c for c in columns if c not in ("pk", "res_pk", "last_updated", "content")]
            select = ", ".join(f"t.{c}" for c in keep)
            if name == "resources":
                sql = f"SELECT {select}, t.content FROM resources t"
            else:
                sql = (
                    f"SELECT r.res_type, r.res_id, {select}"
                    + (", t.content" if "content" in columns else "")
                    + f" FROM {name} t JOIN resources r ON r.pk = t.res_pk"
                )
            rows = []
            for record in await raw.fetch(sql):
                values = list(record)
                if "content" in columns:
                    doc = orjson.loads(values[-1])
                    doc["meta"].pop("lastUpdated")
                    values[-1] = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
                rows.append(tuple(values))
            out[name] = sorted(rows, key=repr)
        # last_updated must agree between the column and meta.lastUpdated, in both paths.
        bad = await raw.fetchval(
            "SELECT count(*) FROM resources r JOIN history h ON h.res_pk = r.pk"
            " WHERE h.last_updated <> r.last_updated"
        )
        out["_last_updated_mismatches"] = [(bad,)]
    return out


async def check_copy(pg: procs.Postgres, spec: sas_data.Spec) -> list[str]:
    """Load ``spec`` with ``server`` and with ``copy``; the differences (empty: identical)."""
    dumps = []
    for method in ("server", "copy"):
        url = await create_database(pg, f"check_{method}")
        async with opened(url) as ctx:
            await load(ctx, spec, method=method, batch=500, show_progress=False)
            dumps.append(await table_dump(ctx))
    server, copy = dumps
    problems = []
    for name in sorted(set(server) | set(copy)):
        a, b = server.get(name, []), copy.get(name, [])
        if a != b:
            only_a = len(set(a) - set(b))
            only_b = len(set(b) - set(a))
            problems.append(
                f"{name}: {len(a)} rows (server) vs {len(b)} (copy);"
                f" {only_a} only in server, {only_b} only in copy"
            )
    rows = sum(len(v) for k, v in server.items() if not k.startswith("_"))
    if not problems:
        console.print(
            f"[green]copy == server[/green]: {rows:,} rows in {len(server) - 1} tables identical"
            " (primary keys and time stamps aside)"
        )
    return problems


# -- command line -----------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    size = p.add_mutually_exclusive_group()
    size.add_argument("--slots", type=int, default=100_000, help="about this many slots")
    size.add_argument("--practitioners", type=int, help="exactly N practitioners")
    p.add_argument("--days", type=int, default=sas_data.DEFAULT_DAYS)
    p.add_argument("--seed", type=int, default=sas_data.DEFAULT_SEED)
    p.add_argument("--free", type=float, default=sas_data.DEFAULT_FREE)
    p.add_argument(
        "--database",
        default="postgresql",
        help="'postgresql' (a throwaway cluster), 'sqlite' (a temporary file) or a URL",
    )
    p.add_argument("--method", choices=METHODS, default="server")
    p.add_argument("--batch", type=int, default=2000, help="resources per transaction")
    p.add_argument("--jobs", type=int, default=1, help="batches written at once")
    p.add_argument("--validate", action="store_true", help="check_body on every resource")
    p.add_argument("--check-copy", action="store_true", help="compare copy with server rows")
    p.add_argument("--profile", type=Path, help="cProfile the load, save stats here")
    args = p.parse_args(argv)
    if args.batch < 1 or args.jobs < 1 or args.days < 1:
        p.error("--batch, --jobs and --days must be at least 1")
    return args


def spec_from(args: argparse.Namespace) -> sas_data.Spec:
    n = args.practitioners or sas_data.practitioners_for(args.slots, args.days, args.seed)
    return sas_data.Spec(practitioners=n, days=args.days, seed=args.seed, free=args.free)


def print_report(report: LoadReport) -> None:
    console.print(
        f"{report.method} → {report.engine}: {report.slots:,} slots"
        f" ({report.resources:,} resources: "
        + ", ".join(f"{n:,} {t}" for t, n in report.by_type.items())
        + f") in {report.seconds:,.1f} s = [bold]{report.slots_per_second:,.0f} slots/s[/bold]"
        f" ({report.resources_per_second:,.0f} resources/s; batches of {report.batch},"
        f" {report.jobs} job(s){', validated' if report.validate else ''})"
    )


async def amain(args: argparse.Namespace) -> int:
    spec = spec_from(args)
    async with AsyncExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sas-load-")))
        pg = None
        if args.database in ("postgresql", "sqlite") or args.check_copy:
            if args.database == "sqlite" and not args.check_copy:
                url = f"sqlite+aiosqlite:///{work}/fhir.sqlite"
            else:
                bin_dir = procs.pg_bin_dir()
                if bin_dir is None:
                    console.print("[red]PostgreSQL binaries not found[/red]")
                    return 2
                with console.status("starting a throwaway PostgreSQL cluster"):
                    pg = stack.enter_context(procs.postgres(bin_dir))
                url = pg.url
        else:
            url = args.database
        if args.check_copy:
            assert pg is not None
            small = sas_data.Spec(practitioners=6, days=8, seed=args.seed, free=args.free)
            problems = await check_copy(pg, small)
            for problem in problems:
                console.print(f"[red]{problem}[/red]")
            return 1 if problems else 0
        engine = "sqlite" if url.startswith("sqlite") else "postgresql"
        ctx = await stack.enter_async_context(opened(url))
        profiler = cProfile.Profile() if args.profile else None
        if profiler:
            profiler.enable()
        report = await load(
            ctx,
            spec,
            method=args.method,
            batch=args.batch,
            jobs=args.jobs,
            validate=args.validate,
            engine=engine,
        )
        if profiler:
            profiler.disable()
            profiler.dump_stats(args.profile)
            pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(25)
        print_report(report)
        if engine == "postgresql":
            with console.status("VACUUM ANALYZE and table sizes"):
                sizes = await analyze_and_size(ctx)
            console.print(size_table(sizes, report.slots))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run(amain(args))


def run(coro: Any) -> Any:
    """``asyncio.run`` on uvloop when installed (as uvicorn serves)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


if __name__ == "__main__":
    sys.exit(main())
