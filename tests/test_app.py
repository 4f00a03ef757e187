"""Start-up: the app serves only a database that holds its code's schema.

SQLite (the embedded default) migrates itself; on PostgreSQL a missing, older or newer
schema stops the start before "ready" (``prepare_schema``), unless told to migrate.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from alembic import command
from sqlalchemy import text

from fhir_server.app import SchemaRefused, create_app, prepare_schema
from fhir_server.settings import Settings
from fhir_server.storage.migrate import alembic_config
from fhir_server.storage.port import Store
from tests.conftest import open_store


def settings_for(url: str) -> Settings:
    return Settings(database_url=url, validate_profiles=False, availability_preload=False)


@pytest.fixture
async def unmigrated(database_url: str) -> AsyncIterator[Store]:
    store = open_store(database_url)
    try:
        yield store
    finally:
        await store.close()


async def older(store: Store) -> None:
    async with store.writing() as w:  # the revision before the newest one
        await w.conn.run_sync(lambda c: command.upgrade(alembic_config(c), "head-1"))


async def test_postgresql_without_schema_does_not_start(pg_url: str) -> None:
    app = create_app(settings_for(pg_url))
    with pytest.raises(SchemaRefused) as refused:
        async with app.router.lifespan_context(app):
            pytest.fail("the app started")
    message = str(refused.value)
    assert "never migrated" in message and "fhir-server migrate" in message
    assert "serve --migrate" in message


@pytest.mark.parametrize("migrate", [False, True])
async def test_an_older_schema_is_refused_unless_told_to_migrate(
    unmigrated: Store, database_url: str, migrate: bool
) -> None:
    await older(unmigrated)
    settings = settings_for(database_url)
    if unmigrated.dialect == "sqlite" or migrate:  # SQLite always migrates itself
        await prepare_schema(settings, unmigrated, migrate=migrate)
        assert (await unmigrated.schema_state()).current
        return
    with pytest.raises(SchemaRefused, match="older than this server's") as refused:
        await prepare_schema(settings, unmigrated)
    assert "fhir-server migrate" in str(refused.value)
    assert not (await unmigrated.schema_state()).current  # nothing was changed


async def test_a_newer_schema_is_refused_on_every_engine(
    unmigrated: Store, database_url: str
) -> None:
    await unmigrated.migrate()
    async with unmigrated.writing() as w:
        await w.conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    settings = settings_for(database_url)
    with pytest.raises(SchemaRefused, match="9999, which this server does not know"):
        await prepare_schema(settings, unmigrated, migrate=True)


async def test_sqlite_sets_itself_up_and_serves(tmp_path: Path) -> None:
    app = create_app(settings_for(f"sqlite+aiosqlite:///{tmp_path}/fhir.sqlite"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            assert (await c.get("/Slot")).status_code == 200


def test_the_access_log_can_be_turned_off(tmp_path: Path) -> None:
    """FHIR_ACCESS_LOG=false: no access middleware (a reverse proxy logs the requests)."""
    from fhir_server import logging as fhir_logging
    from fhir_server.app import create_app
    from fhir_server.settings import Settings

    url = f"sqlite+aiosqlite:///{tmp_path}/x.sqlite"
    on = create_app(Settings(database_url=url, validate_profiles=False, audit=False))
    off = create_app(
        Settings(database_url=url, validate_profiles=False, access_log=False, audit=False)
    )
    assert [m.cls for m in on.user_middleware] == [fhir_logging.AccessLog]
    assert off.user_middleware == []
