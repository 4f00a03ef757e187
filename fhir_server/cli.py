"""The ``fhir-server`` command: serve, migrate, load, reindex."""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fhir_server.settings import Settings

app = typer.Typer(help="SAS FHIR server", no_args_is_help=True, add_completion=False)


@app.callback()
def _configure() -> None:
    """Structured logs for every command, at FHIR_LOG_LEVEL."""
    from fhir_server import logging as fhir_logging

    settings = Settings()
    fhir_logging.configure(settings.log_level, settings.log_format)


console = Console(stderr=True)


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
) -> None:
    """Run the FHIR server (SQLite under ./var/ unless FHIR_DATABASE_URL says otherwise)."""
    import uvicorn

    settings = Settings()
    if settings.auth == "none" and not _is_loopback(host):
        console.print(
            f"[red]refusing to listen on {host} with FHIR_AUTH=none[/red]: "
            "authentication is off, so only loopback addresses are allowed"
        )
        raise typer.Exit(2)
    if workers > 1 and settings.is_sqlite:
        console.print("[red]several workers need PostgreSQL (FHIR_DATABASE_URL)[/red]")
        raise typer.Exit(2)
    if workers > 1:
        uvicorn.run(
            "fhir_server.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=settings.log_level,
            access_log=False,
        )
    else:
        from fhir_server.app import create_app

        uvicorn.run(
            create_app(settings),
            host=host,
            port=port,
            log_level=settings.log_level,
            access_log=False,
        )


@app.command()
def migrate() -> None:
    """Create or upgrade the database schema (Alembic migrations)."""
    from fhir_server.app import make_store

    async def run() -> None:
        store = make_store(Settings())
        try:
            await store.migrate()
        finally:
            await store.close()

    asyncio.run(run())
    console.print("[green]database schema is up to date[/green]")


@app.command()
def load(
    paths: Annotated[
        list[Path], typer.Argument(help="Files or folders (.json Bundles/resources, .ndjson)")
    ],
) -> None:
    """Load FHIR data; each file is stored whole or not at all, bad files are reported."""
    from fhir_server.app import make_context, make_store
    from fhir_server.loader import FileReport, files_under, load_file

    files = files_under(paths)
    missing = [p for p in files if not p.exists()]
    if missing:
        console.print(f"[red]not found:[/red] {', '.join(map(str, missing))}")
        raise typer.Exit(2)

    async def run() -> list[FileReport]:
        settings = Settings()
        store = make_store(settings)
        await store.migrate()
        ctx = make_context(settings, store)
        reports = []
        try:
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
            ) as progress:
                task = progress.add_task("loading", total=len(files))
                for path in files:
                    progress.update(task, description=f"loading {path.name}")
                    reports.append(await load_file(ctx, path))
                    progress.advance(task)
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


@app.command()
def reindex(
    res_type: Annotated[
        str | None, typer.Option("--type", help="Only this resource type (e.g. Slot)")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Resources per write transaction")] = 500,
) -> None:
    """Recompute the search index of stored resources, after the search parameter definitions
    changed (e.g. a FHIR package was installed in FHIR_PACKAGE_PATH)."""
    from fhir_server.app import make_context, make_store
    from fhir_server.core.types import SERVED_TYPES
    from fhir_server.search.reindex import ReindexReport, count_current
    from fhir_server.search.reindex import reindex as run_reindex

    if res_type is not None and res_type not in SERVED_TYPES:
        console.print(f"[red]{res_type} is not served[/red] (one of {', '.join(SERVED_TYPES)})")
        raise typer.Exit(2)

    async def run() -> ReindexReport:
        settings = Settings()
        store = make_store(settings)
        try:
            await store.migrate()
            ctx = make_context(settings, store)
            total = await count_current(store, res_type)
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
            ) as progress:
                task = progress.add_task(f"reindexing {res_type or 'all types'}", total=total)
                return await run_reindex(
                    store,
                    ctx.registry,
                    res_type=res_type,
                    batch_size=batch_size,
                    progress=lambda n: progress.advance(task, n),
                )
        finally:
            await store.close()

    report = asyncio.run(run())
    console.print(
        f"[green]reindexed {report.resources} resource(s)[/green]: "
        f"{report.rows} index row(s) in {report.batches} transaction(s)"
    )


def main() -> None:
    app()


if __name__ == "__main__":
    main()
