"""``fhir-server serve`` on a PostgreSQL database that does not hold the code's schema: it
refuses to start, before "ready", naming the command to run; ``--migrate`` migrates first."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import httpx
import pytest
from alembic import command

from fhir_server.storage.migrate import alembic_config
from tests.conftest import open_store
from tests.e2e.test_serve import BIN, free_port, run, serving, with_packages

pytestmark = pytest.mark.e2e


def env_for(url: str) -> dict[str, str]:
    return with_packages({**os.environ, "FHIR_DATABASE_URL": url, "FHIR_LOG_LEVEL": "info"})


def serve(url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    argv = [str(BIN / "fhir-server"), "serve", "--port", str(free_port()), *extra]
    return run(argv, env_for(url), timeout=60)


def test_an_unmigrated_database_is_refused_with_the_command_to_run(pg_url: str) -> None:
    refused = serve(pg_url)
    assert refused.returncode == 1
    output = refused.stdout + refused.stderr
    assert "never migrated" in output and "Run `fhir-server migrate`" in output
    assert "ready" not in output


def test_an_older_schema_is_refused_too(pg_url: str) -> None:
    async def migrate_to_previous() -> None:
        store = open_store(pg_url)
        try:
            async with store.writing() as w:
                await w.conn.run_sync(lambda c: command.upgrade(alembic_config(c), "head-1"))
        finally:
            await store.close()

    asyncio.run(migrate_to_previous())
    refused = serve(pg_url)
    assert refused.returncode == 1
    output = refused.stdout + refused.stderr
    assert "older than this server's" in output and "fhir-server migrate" in output
    assert "ready" not in output


def test_serve_migrate_migrates_then_serves(pg_url: str, tmp_path: Path) -> None:
    with serving(env_for(pg_url), tmp_path / "server.log", "--migrate") as base:
        assert httpx.get(f"{base}/Slot", timeout=5).status_code == 200
