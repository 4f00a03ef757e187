"""What the migrations leave behind beyond the tables of ``schema``."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import text

from fhir_server.storage.migrate import SchemaState, alembic_config
from fhir_server.storage.port import Store
from tests.conftest import open_store


async def test_postgresql_has_extended_statistics_on_index_tables(store: Store) -> None:
    if store.dialect != "postgresql":
        pytest.skip("extended statistics are a PostgreSQL feature")
    async with store.reading() as session:
        rows = await session.fetch(text("SELECT stxname FROM pg_statistic_ext ORDER BY stxname"))
    names = {row[0] for row in rows}
    assert {"st_idx_token", "st_idx_reference", "st_idx_ref_date", "st_idx_date"} <= names


async def test_schema_state_follows_the_migrations(database_url: str) -> None:
    """Missing, then older than the code, current, and newer than the code."""
    store = open_store(database_url)
    try:
        state = await store.schema_state()
        assert (state.status, state.revision) == ("missing", None) and not state.current
        head = state.head
        previous = ScriptDirectory.from_config(alembic_config()).get_revision(head).down_revision
        assert isinstance(previous, str)
        async with store.writing() as w:
            await w.conn.run_sync(lambda c: command.upgrade(alembic_config(c), previous))
        assert await store.schema_state() == SchemaState("behind", previous, head)
        await store.migrate()
        assert await store.schema_state() == SchemaState("current", head, head)
        async with store.writing() as w:
            await w.conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
        assert await store.schema_state() == SchemaState("ahead", "9999", head)
    finally:
        await store.close()
