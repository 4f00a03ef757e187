"""The ``fhir-server`` command: serve, migrate, load, ingest, pull, reindex, dev-idp, dev-certs,
packages."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import signal
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from fhir_server.settings import Settings

if TYPE_CHECKING:
    from fhir_server.ingest.report import Finding
    from fhir_server.package_cache import Ref

app = typer.Typer(help="SAS FHIR server", no_args_is_help=True, add_completion=False)


@app.callback()
def _configure() -> None:
    """Structured logs for every command, at FHIR_LOG_LEVEL."""
    from fhir_server import logging as fhir_logging

    settings = Settings()
    fhir_logging.configure(settings.log_level, settings.log_format)


console = Console(stderr=True)


def _say(text: str, style: str | None = None) -> None:
    """A message as plain text (paths, URLs and commands are not rich markup), wrapped."""
    console.print(text, markup=False, highlight=False, soft_wrap=True, style=style)


def _counting_progress() -> Progress:
    """A bar with done/total and elapsed time, for ``load`` and ``reindex``."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def _batch_settings() -> Settings:
    """Settings for ``migrate``, ``load`` and ``reindex``: their statements are not a
    request's, so FHIR_STATEMENT_TIMEOUT_MS does not cut them short."""
    return Settings().model_copy(update={"statement_timeout_ms": 0})


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port")] = 8080,
    workers: Annotated[int, typer.Option(help="Worker processes (PostgreSQL only)")] = 1,
    migrate: Annotated[
        bool,
        typer.Option(
            "--migrate",
            help="Apply the database migrations before serving (SQLite always does; on "
            "PostgreSQL the server otherwise refuses a schema older than its code)",
        ),
    ] = False,
) -> None:
    """Run the FHIR server (SQLite under ./var/ unless FHIR_DATABASE_URL says otherwise;
    HTTPS with client certificates when FHIR_TLS_* are set)."""
    settings = Settings()
    if settings.auth == "none" and not _is_loopback(host):
        _say(
            f"refusing to listen on {host} with FHIR_AUTH=none: "
            "authentication is off, so only loopback addresses are allowed",
            "red",
        )
        raise typer.Exit(2)
    if workers > 1 and settings.is_sqlite:
        console.print("[red]several workers need PostgreSQL (FHIR_DATABASE_URL)[/red]")
        raise typer.Exit(2)
    _check_auth(settings)
    _require_packages(settings)
    _require_schema(settings, migrate)
    _check_tls(settings)
    _check_pull_sources(settings)
    _check_delivery(settings)
    if workers > 1:
        from fhir_server.workers import serve_workers

        raise typer.Exit(serve_workers(host, port, workers))
    else:
        from fhir_server import serving
        from fhir_server.app import create_app

        serving.run(create_app(settings), settings, host=host, port=port)


def _check_auth(settings: Settings) -> None:
    """Exit 2 when authentication is on but no client could ever authenticate: a server
    answering 401 to everyone is a configuration mistake, better said at start-up."""
    if settings.auth == "none" or settings.client_certificates or settings.psc_issuer:
        return
    _say(
        "FHIR_AUTH=on (the default) but no client can authenticate: set "
        "FHIR_CLIENT_CERTIFICATES (with FHIR_TLS_CLIENT_CA_FILE, or behind a trusted proxy) "
        "and/or FHIR_PSC_ISSUER (Bearer tokens), see docs/security.md; for local development "
        "only, FHIR_AUTH=none on a loopback address",
        "red",
    )
    raise typer.Exit(2)


def _check_tls(settings: Settings) -> bool:
    """Exit 2 on a TLS configuration that cannot work (before any worker starts); whether
    the server speaks HTTPS."""
    cert, key = settings.tls_cert_file, settings.tls_key_file
    if cert is None and key is None:
        if settings.tls_client_ca_file is not None:
            _say("FHIR_TLS_CLIENT_CA_FILE needs FHIR_TLS_CERT_FILE and FHIR_TLS_KEY_FILE", "red")
            raise typer.Exit(2)
        return False
    from fhir_server.serving import tls_context

    try:
        tls_context(settings)
    except (OSError, ValueError, ssl.SSLError) as exc:
        _say(f"cannot set up TLS: {exc}", "red")
        raise typer.Exit(2) from None
    return True


def _check_pull_sources(settings: Settings) -> None:
    """Exit 2 on a sources file that cannot be used (FHIR_PULL_SOURCES, docs/pull.md):
    every problem said now rather than a source silently never polled."""
    if settings.pull_sources is None:
        return
    from fhir_server.ingest.pull.config import PullConfigError, load_sources

    try:
        load_sources(settings.pull_sources)
    except PullConfigError as exc:
        _say(f"FHIR_PULL_SOURCES: {exc}", "red")
        raise typer.Exit(2) from None


def _check_delivery(settings: Settings) -> None:
    """Exit 2 on a SAS push configuration that cannot work (FHIR_SAS_*, docs/delivery.md):
    said at start rather than every message retried for ever. Never prints a key."""
    if not settings.sas_appointments_url:
        return
    if not settings.sas_appointments_url.startswith("https://"):
        _say("FHIR_SAS_APPOINTMENTS_URL must be an https:// URL (mutual TLS)", "red")
        raise typer.Exit(2)
    if (settings.sas_client_cert is None) != (settings.sas_client_key is None):
        _say("FHIR_SAS_CLIENT_CERT and FHIR_SAS_CLIENT_KEY go together", "red")
        raise typer.Exit(2)
    from fhir_server.delivery.sender import SasTarget

    target = SasTarget(
        settings.sas_appointments_url,
        settings.sas_client_cert,
        settings.sas_client_key,
        settings.sas_ca_file,
    )
    try:
        target.tls()
    except (OSError, ValueError, ssl.SSLError) as exc:
        _say(f"cannot set up TLS towards the SAS platform: {type(exc).__name__}", "red")
        raise typer.Exit(2) from None


@app.command()
def pull(
    once: Annotated[
        bool, typer.Option("--once", help="Poll each source once now (due or not), then exit")
    ] = False,
    source: Annotated[
        str | None, typer.Option("--source", help="Only this source (its name)")
    ] = None,
) -> None:
    """Poll the sources of FHIR_PULL_SOURCES and ingest them (docs/pull.md): forever, beside
    any `serve` processes on the same database (each source polled by one at a time), or
    `--once`. Exit 1 when a source failed (--once), 2 for a bad sources file."""
    from fhir_server.app import make_context, make_puller, make_store

    settings = _batch_settings()
    if settings.pull_sources is None:
        _say("FHIR_PULL_SOURCES is not set: no source to poll (docs/pull.md)", "red")
        raise typer.Exit(2)
    _check_pull_sources(settings)

    async def run() -> list[Any]:
        store = make_store(settings)
        await store.migrate()
        try:
            puller = make_puller(settings, make_context(settings, store))
            assert puller is not None
            if source is not None and source not in {s.name for s in puller.sources}:
                _say(f"no source named {source!r} in {settings.pull_sources}", "red")
                raise typer.Exit(2)
            await puller.prepare()
            if once:
                return await puller.run_once(source, force=True)
            # SIGTERM as Ctrl-C: the poll in flight frees its lease (another process
            # takes the source at once) instead of leaving it to expire
            forever = asyncio.ensure_future(puller.run_forever())
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, forever.cancel)
            with contextlib.suppress(asyncio.CancelledError):
                await forever
            return []
        finally:
            await store.close()

    outcomes = asyncio.run(run())
    table_out = Table(title="pull report")
    for column in (
        "source",
        "status",
        "requests",
        "slots",
        "created",
        "updated",
        "removed",
        "unchanged",
        "rejected",
        "seconds",
    ):
        table_out.add_column(column, justify="left" if column in ("source", "status") else "right")
    for o in outcomes:
        counts = [
            str(o.counts.get(n, 0))
            for n in ("created", "updated", "removed", "unchanged", "rejected")
        ]
        table_out.add_row(
            o.source, o.status, str(o.requests), str(o.slots), *counts, f"{o.seconds:.1f}"
        )
    console.print(table_out)
    for o in outcomes:
        if o.error:
            _say(f"{o.source}: {o.error}", "red")
    if any(o.error for o in outcomes):
        raise typer.Exit(1)


@app.command()
def deliver(
    once: Annotated[
        bool,
        typer.Option(
            "--once", help="Send what is due now (retries waiting stay queued), then exit"
        ),
    ] = False,
) -> None:
    """Send the outbox to the SAS platform (FHIR_SAS_APPOINTMENTS_URL, docs/delivery.md):
    forever, beside any `serve` processes on the same database (each message sent by one
    at a time, each appointment's versions in order), or `--once`. Exit 1 when messages
    are left unsent or failed (--once), 2 without FHIR_SAS_APPOINTMENTS_URL."""
    from fhir_server.app import make_sender, make_store
    from fhir_server.delivery.queue import FAILED, PENDING, SENDING
    from fhir_server.delivery.sender import MAX_ROUNDS, Round

    settings = _batch_settings()
    if not settings.sas_appointments_url:
        # the Subscriptions' notifications still go out (docs/subscriptions.md)
        if asyncio.run(_deliver_subscriptions(settings, once)):
            return
        _say("FHIR_SAS_APPOINTMENTS_URL is not set: nowhere to deliver (docs/delivery.md)", "red")
        raise typer.Exit(2)
    _check_delivery(settings)

    async def run() -> tuple[Round, dict[str, int]]:
        store = make_store(settings)
        await store.migrate()
        sender = make_sender(settings, store, purging=not once)  # it purges too
        assert sender is not None
        total = Round()
        try:
            if not once:
                # SIGTERM or Ctrl-C: the round in flight ends (its outcomes recorded), then
                # the command exits
                stopping = asyncio.Event()
                for signum in (signal.SIGTERM, signal.SIGINT):
                    asyncio.get_running_loop().add_signal_handler(signum, stopping.set)
                sender.start()
                await stopping.wait()
                return total, {}
            with _counting_progress() as progress:
                task = progress.add_task("delivering", total=None)
                for _ in range(MAX_ROUNDS):
                    done = await sender.send_due()
                    total.add(done)
                    progress.update(task, completed=total.sent + total.failed)
                    if done.claimed == 0:
                        break
            status = (await sender.queue.status("sas")).get("sas")
            return total, dict(status.counts) if status else {}
        finally:
            await sender.stop()
            await store.close()

    total, counts = asyncio.run(run())
    if not once:
        return
    table_out = Table(title="delivery report (channel sas)")
    for column in ("sent", "retried", "failed", "pending", "failed in all"):
        table_out.add_column(column, justify="right")
    left = counts.get(PENDING, 0) + counts.get(SENDING, 0)
    table_out.add_row(
        str(total.sent),
        str(total.retried),
        str(total.failed),
        str(left),
        str(counts.get(FAILED, 0)),
    )
    console.print(table_out)
    if left or total.failed:
        raise typer.Exit(1)


async def _deliver_subscriptions(settings: Settings, once: bool) -> bool:
    """Send the rest-hook notifications alone (no SAS URL); False when no Subscription is
    stored (nothing to deliver at all)."""
    from fhir_server.app import make_context, make_store, make_subscription_sender
    from fhir_server.core.caller import SYSTEM

    store = make_store(settings)
    try:
        await store.migrate()
        sender = make_subscription_sender(
            settings, make_context(settings, store).acting_for(SYSTEM), purging=not once
        )
        await sender.subscriptions()
        if not len(sender.active):
            return False
        _say("FHIR_SAS_APPOINTMENTS_URL is not set: sending the Subscriptions' notifications only")
        try:
            if once:
                await sender.run_once()
            else:
                stopping = asyncio.Event()
                for signum in (signal.SIGTERM, signal.SIGINT):
                    asyncio.get_running_loop().add_signal_handler(signum, stopping.set)
                sender.start()
                await stopping.wait()
        finally:
            await sender.stop()
        return True
    finally:
        await store.close()


@app.command()
def purge(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be purged, delete nothing")
    ] = False,
) -> None:
    """Delete the outbox's sent messages older than FHIR_DELIVERY_KEEP_HOURS, its failed
    ones older than FHIR_DELIVERY_KEEP_FAILED_HOURS and the Idempotency-Key records older
    than FHIR_IDEMPOTENCY_KEY_HOURS, in batches (docs/delivery.md); pending messages are
    never purged. The senders of `serve` and `deliver` do it every
    FHIR_DELIVERY_PURGE_EVERY seconds; this runs it now. Exit 1 when another process was
    purging or rows are left (run it again)."""
    from fhir_server.app import make_store, purge_targets
    from fhir_server.delivery import retention

    settings = _batch_settings()
    _require_schema(settings, migrate=False)

    async def run() -> retention.Purged:
        store = make_store(settings)
        try:
            targets = purge_targets(settings)
            if dry_run:
                return await retention.count(store, targets)
            planned = await retention.count(store, targets)
            with _counting_progress() as progress:
                bars = {
                    t.name: progress.add_task(t.name, total=planned.counts[t.name]) for t in targets
                }

                def advance(name: str, n: int) -> None:
                    progress.advance(bars[name], n)

                return await retention.purge(store, targets, progress=advance)
        finally:
            await store.close()

    done = asyncio.run(run())
    table_out = Table(title="purge (dry run: nothing deleted)" if dry_run else "purge")
    table_out.add_column("rows")
    table_out.add_column("would be deleted" if dry_run else "deleted", justify="right")
    for name, n in done.counts.items():
        table_out.add_row(name, str(n))
    console.print(table_out)
    if done.busy:
        _say("another process is purging: stopped (run it again later)", "yellow")
    if not done.complete:
        _say("rows are left (a run deletes a bounded number): run it again", "yellow")
    if done.busy or not done.complete:
        raise typer.Exit(1)


@app.command("dev-certs")
def dev_certs(
    directory: Annotated[Path, typer.Argument(help="Folder to write the files into")],
    host: Annotated[
        list[str] | None,
        typer.Option(help="Name or address of the server certificate (repeatable)"),
    ] = None,
) -> None:
    """Write throwaway certificates for development: a CA, a server certificate for
    loopback, a client certificate per demo system, a CRL and the allow-list (never for
    production: that is IGC-Santé, see docs/security.md)."""
    from auth.devcerts import write_dev_certs

    files = write_dev_certs(directory, tuple(host or ("127.0.0.1", "::1", "localhost")))
    d = files.directory
    _say(f"wrote development certificates to {d} (private keys readable by you only)")
    _say(
        "serve with them:\n"
        f"  FHIR_AUTH=on FHIR_TLS_CERT_FILE={files.server_cert} "
        f"FHIR_TLS_KEY_FILE={files.server_key} FHIR_TLS_CLIENT_CA_FILE={files.ca} "
        f"FHIR_TLS_CRL_FILES='[\"{files.crl}\"]' "
        f'FHIR_CLIENT_CERTIFICATES="$(cat {files.allow_list})" fhir-server serve'
    )
    cert, key = files.clients["platform"]
    _say(
        "call the API as the SAS platform:\n"
        f"  curl --cacert {files.ca} --cert {cert} --key {key} "
        "https://127.0.0.1:8080/metadata"
    )


def _require_schema(settings: Settings, migrate: bool) -> None:
    """Exit 1, saying which command to run, unless the database holds this code's schema
    (migrated here first when ``migrate`` or SQLite): before any worker starts."""
    from fhir_server.app import SchemaRefused, make_store, prepare_schema

    async def run() -> None:
        store = make_store(settings)
        try:
            await prepare_schema(settings, store, migrate=migrate)
        finally:
            await store.close()

    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    try:
        asyncio.run(run())
    except SchemaRefused as refused:
        _say(str(refused), "red")
        raise typer.Exit(1) from None
    except (OSError, SQLAlchemyError) as exc:
        where = make_url(settings.database_url).render_as_string(hide_password=True)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        _say(
            f"cannot open the database {where}: {reason}",
            "red",
        )
        raise typer.Exit(1) from None


@app.command()
def migrate() -> None:
    """Create or upgrade the database schema (Alembic migrations)."""
    from fhir_server.app import make_store

    async def run() -> None:
        store = make_store(_batch_settings())
        try:
            await store.migrate()
        finally:
            await store.close()

    asyncio.run(run())
    console.print("[green]database schema is up to date[/green]")


# `load` and `reindex` write the search index: without a package that defines search
# parameters, the rows of those parameters would be missing until a reindex.
AllowMissingPackages = Annotated[
    bool,
    typer.Option(
        "--allow-missing-packages",
        help="Index with the R4 search parameters only when a FHIR package that adds some "
        "(profiles/packages.toml) is not in FHIR_PACKAGE_PATH; reindex once it is installed",
    ),
]


@app.command()
def load(
    paths: Annotated[
        list[Path], typer.Argument(help="Files or folders (.json Bundles/resources, .ndjson)")
    ],
    check_references: Annotated[
        bool,
        typer.Option(
            help="Refuse a file whose relative references name no stored resource; "
            "--no-check-references loads files that reference each other out of order",
        ),
    ] = True,
    allow_missing_packages: AllowMissingPackages = False,
) -> None:
    """Load FHIR data; each file is stored whole or not at all, bad files are reported."""
    from fhir_server.app import make_context, make_store
    from fhir_server.core.caller import SYSTEM
    from fhir_server.loader import SUFFIXES, FileReport, count_resources, files_under, load_file

    _require_search_packages(Settings(), allowed=allow_missing_packages)
    files = files_under(paths)
    missing = [p for p in files if not p.exists()]
    if missing:
        console.print(f"[red]not found:[/red] {', '.join(map(str, missing))}")
        raise typer.Exit(2)
    if not files:
        _say(
            f"[red]nothing to load:[/red] no FHIR file ({', '.join(SUFFIXES)}) in "
            f"{', '.join(map(str, paths))}"
        )
        raise typer.Exit(2)

    async def run() -> list[FileReport]:
        settings = _batch_settings()
        if not check_references:
            settings.referential_integrity = False
        store = make_store(settings)
        await store.migrate()
        # the server's own work: no owner recorded, no access policy (auth/policy.py)
        ctx = make_context(settings, store).acting_for(SYSTEM)
        reports: list[FileReport] = []
        try:
            with _counting_progress() as progress:
                task = progress.add_task("counting resources", total=None)
                counts = [count_resources(path) for path in files]
                progress.update(task, total=sum(counts))
                done = 0
                for path, count in zip(files, counts, strict=True):
                    progress.update(task, description=f"loading {path.name}")
                    report = await load_file(
                        ctx, path, progress=lambda n: progress.advance(task, n)
                    )
                    reports.append(report)
                    done += count  # a skipped file's resources count as gone through
                    progress.update(task, completed=done)
            if any(r.resources and not r.error for r in reports):
                await store.optimize()  # statistics for the planner, after the bulk writes
        finally:
            await store.close()
        return reports

    reports = asyncio.run(run())
    table = Table(title="load report")
    table.add_column("file", overflow="fold")
    table.add_column("resources", justify="right")
    table.add_column("result", overflow="fold")
    failed = 0
    for r in reports:
        if r.error:
            failed += 1
            table.add_row(str(r.path), "0", f"[red]skipped: {r.error}[/red]")
        else:
            table.add_row(str(r.path), str(r.resources), "[green]loaded[/green]")
    console.print(table)
    if failed:
        # One unwrapped line per skipped file: the table folds long paths, logs must not.
        for r in reports:
            if r.error:
                console.print(f"skipped {r.path}: {r.error}", soft_wrap=True, markup=False)
        console.print(f"[yellow]{failed} file(s) skipped[/yellow]")
        raise typer.Exit(1)
    if not any(r.resources for r in reports):
        console.print(f"[red]nothing loaded:[/red] the {len(files)} file(s) hold no FHIR resource")
        raise typer.Exit(1)


@app.command()
def ingest(
    sources: Annotated[list[str], typer.Argument(help="Feed files or http(s) URLs")],
    format_name: Annotated[
        str, typer.Option("--format", help="The feed's format (mappings registry name)")
    ],
    rpps_table: Annotated[
        Path | None,
        typer.Option(help="Vendor practitioner key -> RPPS, CSV (key,rpps) or JSON object"),
    ] = None,
    vendor: Annotated[
        str, typer.Option(help="Vendor short name, prefix of every id (default: the format's)")
    ] = "",
    booking_url: Annotated[
        str | None, typer.Option(help="Booking page put in each Slot.comment")
    ] = None,
    window_days: Annotated[
        int, typer.Option(min=1, max=366, help="Window of feeds that carry none, from now")
    ] = 2,
    owner: Annotated[
        str | None,
        typer.Option(
            help="Write as this vendor client id (its ownership and policy); "
            "default: as the server itself"
        ),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds allowed to fetch each URL")] = 30.0,
) -> None:
    """Ingest vendor feeds: each practitioner's snapshot reconciled whole (docs/ingest.md)."""
    from fhir_server.app import make_context, make_store
    from fhir_server.core.caller import SYSTEM, Caller
    from fhir_server.ingest.report import COUNTS, RunReport
    from fhir_server.ingest.run import ingest as ingest_feed
    from fhir_server.ingest.sources import SourceError, read_rpps_table, read_source
    from mappings import registry
    from mappings.contract import MappingOptions

    try:
        mapper = registry.mapper(format_name)
        table = read_rpps_table(rpps_table) if rpps_table else {}
    except (KeyError, SourceError) as exc:
        _say(f"error: {exc.args[0]}", style="red")
        raise typer.Exit(2) from exc

    async def run() -> list[RunReport]:
        settings = _batch_settings()
        store = make_store(settings)
        await store.migrate()
        who = Caller(role="vendor", client_id=owner) if owner else SYSTEM
        ctx = make_context(settings, store).acting_for(who)
        reports: list[RunReport] = []
        try:
            with _counting_progress() as progress:
                for name in sources:
                    task = progress.add_task(f"ingesting {name}", total=None)
                    try:
                        data = read_source(name, settings.ingest_max_bytes, timeout)
                    except SourceError as exc:
                        report = RunReport(name)
                        report.findings.append(_finding(str(exc), name))
                        reports.append(report)
                        continue
                    options = MappingOptions(
                        source=name,
                        vendor=vendor,
                        rpps_table=table,
                        booking_url=booking_url,
                        window_days=window_days,
                        max_bytes=settings.ingest_max_bytes,
                    )

                    def advance(done: int, total: int, task: TaskID = task) -> None:
                        progress.update(task, completed=done, total=total)

                    reports.append(
                        await ingest_feed(
                            ctx,
                            mapper,
                            data,
                            options,
                            vanished=settings.ingest_vanished,
                            progress=advance,
                        )
                    )
        finally:
            await store.close()
        return reports

    reports = asyncio.run(run())
    table_out = Table(title="ingest report")
    table_out.add_column("source / practitioner", overflow="fold")
    for name in COUNTS:
        table_out.add_column(name, justify="right")
    for report in reports:
        totals = (str(n) for n in report.totals().values())
        table_out.add_row(Text(report.source, style="bold"), *totals)
        for feed in report.feeds:
            table_out.add_row(Text(f"  {feed.key}"), *(str(n) for n in feed.counts().values()))
    console.print(table_out)
    for report in reports:
        findings = [*report.findings, *(f for feed in report.feeds for f in feed.findings)]
        for f in findings:
            # one unwrapped line each: locations are for people and for grep
            _say(f"{f.severity} {f.code} at {f.location}: {f.message}")
    if any(r.unreadable for r in reports) or any(r.totals()["rejected"] for r in reports):
        raise typer.Exit(1)


def _finding(message: str, where: str) -> Finding:
    from fhir_server.ingest.report import Finding

    return Finding("error", "exception", message, where)


@app.command()
def reindex(
    res_type: Annotated[
        str | None, typer.Option("--type", help="Only this resource type (e.g. Slot)")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Resources per write transaction")] = 500,
    allow_missing_packages: AllowMissingPackages = False,
) -> None:
    """Recompute the search index of stored resources, after the search parameter definitions
    changed (e.g. a FHIR package was installed in FHIR_PACKAGE_PATH)."""
    from fhir_server.app import make_context, make_store
    from fhir_server.core.types import SERVED_TYPES
    from fhir_server.search.indexing.reindex import ReindexReport, count_current
    from fhir_server.search.indexing.reindex import reindex as run_reindex

    if res_type is not None and res_type not in SERVED_TYPES:
        console.print(f"[red]{res_type} is not served[/red] (one of {', '.join(SERVED_TYPES)})")
        raise typer.Exit(2)
    _require_search_packages(Settings(), allowed=allow_missing_packages)

    async def run() -> ReindexReport:
        settings = _batch_settings()
        store = make_store(settings)
        try:
            await store.migrate()
            ctx = make_context(settings, store)
            total = await count_current(store, res_type)
            with _counting_progress() as progress:
                task = progress.add_task(f"reindexing {res_type or 'all types'}", total=total)
                report = await run_reindex(
                    store,
                    ctx.registry,
                    res_type=res_type,
                    batch_size=batch_size,
                    progress=lambda n: progress.advance(task, n),
                )
            await store.optimize()  # statistics for the planner, after the bulk writes
            return report
        finally:
            await store.close()

    report = asyncio.run(run())
    console.print(
        f"[green]reindexed {report.resources} resource(s)[/green]: "
        f"{report.rows} index row(s) in {report.batches} transaction(s)"
    )


@app.command("dev-idp")
def dev_idp(
    host: Annotated[str, typer.Option(help="Address to listen on (loopback only)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port")] = 8081,
    clients: Annotated[
        Path | None,
        typer.Option(help="Registered clients, JSON or TOML (default: two development clients)"),
    ] = None,
    issuer: Annotated[
        str | None, typer.Option(help="Issuer URL (default: http://HOST:PORT + the PSC realm path)")
    ] = None,
) -> None:
    """Run a local identity provider compatible with Pro Santé Connect (development and
    tests only: anyone who reaches it can log in as any fictional professional)."""
    import uvicorn

    from auth.dev_idp import PROFESSIONALS, REALM_PATH, ConfigError, DevIdpConfig, create_app
    from auth.dev_idp import load_clients as read_clients

    if not _is_loopback(host):
        _say(f"refusing to listen on {host}: the development IdP serves loopback only", "red")
        raise typer.Exit(2)
    where = f"[{host}]" if ":" in host else host
    try:
        registered = read_clients(clients) if clients is not None else DevIdpConfig().clients
        config = DevIdpConfig(
            issuer=issuer or f"http://{where}:{port}{REALM_PATH}", clients=registered
        )
    except ConfigError as exc:
        _say(str(exc), "red")
        raise typer.Exit(2) from None
    _say(f"issuer: {config.issuer}")
    _say(f"discovery: {config.issuer}/.well-known/wallet-openid-configuration")
    _say(f"rotate the signing key: curl -X POST http://{where}:{port}/dev/rotate")
    for client in config.clients:
        secret = f", secret {client.client_secret}" if client.client_secret else ""
        _say(f"client {client.client_id} ({client.token_endpoint_auth_method}{secret})")
    for pro in PROFESSIONALS:
        _say(
            f"user {pro.login}: {pro.given_name} {pro.family_name}, {pro.title}, "
            f"SubjectNameID {pro.national_id}"
        )
    settings = Settings()
    uvicorn.run(
        create_app(config),
        host=host,
        port=port,
        log_level=settings.log_level,
        access_log=False,  # a logout URL carries an ID token (id_token_hint): never logged
        log_config=None,  # uvicorn's records go through our handler (logging.configure)
    )


packages_app = typer.Typer(
    help="FHIR packages (profiles, search parameters) in the package cache, FHIR_PACKAGE_PATH",
    no_args_is_help=True,
)
app.add_typer(packages_app, name="packages")


def _missing_required(settings: Settings) -> list[str]:
    """The start-up error lines when a required package is missing (profile validation on)."""
    from fhir_server.package_cache import missing_message, missing_required, read_manifest

    if not settings.validate_profiles:
        return []
    missing = missing_required(settings.package_path, read_manifest())
    return missing_message(settings.package_path, missing) if missing else []


def _require_packages(settings: Settings) -> None:
    lines = _missing_required(settings)
    for line in lines:
        _say(line, "red")
    if lines:
        raise typer.Exit(1)


def _require_search_packages(settings: Settings, *, allowed: bool) -> None:
    """Exit 1, saying what to install, when a required package that adds search parameters
    is missing (profile validation on or off: the index needs them); ``allowed``: one
    warning line instead."""
    from fhir_server.package_cache import missing_message, missing_required, read_manifest

    missing = missing_required(settings.package_path, read_manifest(), indexing_only=True)
    if not missing:
        return
    if allowed:
        keys = " ".join(w.key for w in missing)
        console.print(
            f"warning: indexing without the search parameters of {keys} (not installed in "
            f"{settings.package_path.expanduser()}); run `fhir-server reindex` once installed",
            "yellow",
        )
        return
    for line in missing_message(settings.package_path, missing, indexing=True):
        _say(line, "red")
    raise typer.Exit(1)


@packages_app.command("list")
def packages_list() -> None:
    """The packages of profiles/packages.toml, R4 core and their dependencies: installed or
    missing in FHIR_PACKAGE_PATH."""
    from fhir_server.package_cache import closure, is_installed, manifest_roots, read_manifest

    settings = Settings()
    cache = settings.package_path.expanduser()
    table = Table(title=f"FHIR packages in {cache}", title_justify="left")
    table.add_column("package", overflow="fold")
    table.add_column("status")
    table.add_column("required")
    table.add_column("why", overflow="fold")
    missing = 0
    for wanted in closure(cache, manifest_roots(read_manifest())):
        installed = is_installed(cache, wanted.ref)
        missing += not installed
        table.add_row(
            wanted.key,
            "[green]installed[/green]" if installed else "[red]missing[/red]",
            "yes" if wanted.required else "no",
            wanted.reason,
        )
    Console().print(table)
    if not settings.validate_profiles:
        console.print("profile validation is off (FHIR_VALIDATE_PROFILES=false)")
    if missing:
        console.print(f"{missing} missing: `fhir-server packages install` installs them")


@packages_app.command("check")
def packages_check() -> None:
    """Exit 1, saying what to install, when `serve` would refuse to start for want of a
    required package."""
    _require_packages(Settings())
    console.print("[green]the required FHIR packages are installed[/green]")


@packages_app.command("install")
def packages_install(
    names: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[NAME#VERSION]...",
            help="Packages to install; none: those of profiles/packages.toml and R4 core",
        ),
    ] = None,
    sources: Annotated[
        list[Path] | None,
        typer.Option(
            "--from",
            metavar="DIR_OR_TGZ",
            help="A package cache folder, a package folder or a .tgz (repeatable); only these "
            "are used unless --registry is given too",
        ),
    ] = None,
    registry: Annotated[
        str | None,
        typer.Option(help="FHIR package registry URL (default FHIR_PACKAGE_REGISTRY)"),
    ] = None,
    dependencies: Annotated[
        bool, typer.Option(help="Also install the packages' dependencies (package.json)")
    ] = True,
) -> None:
    """Install missing packages (and their dependencies) into FHIR_PACKAGE_PATH, from local
    folders or tarballs (--from) or the FHIR package registry."""
    from fhir_server.package_cache import (
        DirectorySource,
        InstallError,
        Ref,
        RegistrySource,
        Source,
        TarballSource,
        Wanted,
        install,
        manifest_roots,
        read_manifest,
    )

    settings = Settings()
    cache = settings.package_path.expanduser()
    try:
        chosen: list[Source] = [
            DirectorySource(p) if p.is_dir() else TarballSource(p) for p in sources or ()
        ]
        if registry is not None or not chosen:
            chosen.append(RegistrySource(registry or settings.package_registry))
        if names:
            roots = [Wanted(Ref.parse(n), True, "asked for") for n in names]
        else:
            roots = manifest_roots(read_manifest())
        with _InstallProgress() as listener:
            report = install(
                cache, roots, chosen, with_dependencies=dependencies, listener=listener
            )
    except InstallError as exc:
        _say(f"error: {exc}", "red")
        raise typer.Exit(1) from None
    for wanted in report.installed:
        _say(f"installed {wanted.key}")
    if not report.installed and not report.failed:
        console.print(f"nothing to install: the packages are already in {cache}", markup=False)
    for failure in report.failed:
        label, style = ("error", "red") if failure.fatal else ("warning", "yellow")
        _say(
            f"{label}: {failure.message()}",
            style,
        )
    if any(not f.fatal for f in report.failed):
        console.print(
            "optional dependencies not installed: validation goes without their definitions "
            "(`fhir-server packages list` shows them)",
            markup=False,
            soft_wrap=True,
        )
    if any(f.fatal for f in report.failed):
        raise typer.Exit(1)
    if report.installed:
        console.print(
            "run `fhir-server reindex` if the database already holds resources (new search "
            "parameters), and restart the server",
        )


class _InstallProgress:
    """Rich progress for ``packages install`` (a ``package_cache.Listener``): one line per
    package being fetched, with the bytes received while downloading."""

    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[size]}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            disable=not console.is_terminal,
        )
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> _InstallProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def fetching(self, ref: Ref, source: str) -> None:
        description = f"{ref.key} from {source}"
        if ref.key in self.tasks:
            self.progress.update(self.tasks[ref.key], description=description)
        else:
            self.tasks[ref.key] = self.progress.add_task(description, total=None, size="")

    def received(self, ref: Ref, done: int, total: int | None) -> None:
        size = f"{done / 1e6:.1f} MB" + (f" / {total / 1e6:.1f} MB" if total else "")
        self.progress.update(self.tasks[ref.key], completed=done, total=total, size=size)

    def finished(self, ref: Ref, error: str | None) -> None:
        if ref.key in self.tasks:
            self.progress.remove_task(self.tasks.pop(ref.key))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
