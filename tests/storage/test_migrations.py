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


SLOT_JSON = (
    '{"resourceType":"Slot","meta":{"security":[{"system":"https://mos.esante.gouv.fr/NOS/'
    'TRE_R314-TypeCreneau/FHIR/TRE-R314-TypeCreneau","code":"SNP"},{"system":"https://'
    'mos.esante.gouv.fr/NOS/TRE_R314-TypeCreneau/FHIR/TRE-R314-TypeCreneau","code":"PUBLIC"}]}}'
)


async def test_0005_fills_the_labels_of_stored_slots(database_url: str) -> None:
    """Slots stored before 0005 get their TRE-R314 labels, in resources and history; other
    types none; nobody owns what was stored before (the server's own)."""
    store = open_store(database_url)
    rows = [
        (1, "Slot", "s1", SLOT_JSON),
        (2, "Slot", "s2", '{"resourceType":"Slot"}'),
        (3, "Schedule", "x", '{"resourceType":"Schedule"}'),
    ]
    try:
        async with store.writing() as w:
            await w.conn.run_sync(lambda c: command.upgrade(alembic_config(c), "0004"))
            for pk, res_type, res_id, content in rows:
                values = {"pk": pk, "t": res_type, "i": res_id, "c": content.encode()}
                for table, key in (("resources", "pk"), ("history", "res_pk")):
                    method = ", method" if table == "history" else ""
                    await w.conn.execute(
                        text(
                            f"INSERT INTO {table} ({key}, res_type, res_id, version,"
                            f" last_updated, deleted, content{method}) VALUES (:pk, :t, :i, 1,"
                            f" '2026-01-01 00:00:00+00:00', false, :c{', :m' if method else ''})"
                        ),
                        {**values, "m": "PUT"} if method else values,
                    )
        await store.migrate()
        async with store.reading() as r:
            for table, key in (("resources", "pk"), ("history", "res_pk")):
                found = await r.fetch(text(f"SELECT {key}, owner, labels FROM {table} ORDER BY 1"))
                assert [tuple(row) for row in found] == [
                    (1, None, "|PUBLIC|SNP|"),
                    (2, None, "|UNLABELLED|"),
                    (3, None, None),
                ]
    finally:
        await store.close()
