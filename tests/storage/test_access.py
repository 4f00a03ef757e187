"""The caller's context on the storage port, and the one place where it limits rows.

There is no access policy yet (every caller sees every row); these tests prove the caller
reaches the adapter, and that a where-clause put in ``SqlStore.visible`` applies to every
select of resources the store makes for that caller, on both engines and their fast paths.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import ColumnElement, select
from sqlalchemy.sql import FromClause

from fhir_server.core.caller import SYSTEM, Caller
from fhir_server.storage import schema
from fhir_server.storage.port import Store, Stored
from fhir_server.storage.postgres import PostgresStore
from fhir_server.storage.rows import STORED_COLUMNS, stored_from_row
from fhir_server.storage.sqlite import SqliteStore

T0 = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)
VENDOR = Caller(role="vendor", client_id="agenda-pro", user_id="810001234567")
ADMIN = Caller(role="admin")


def stored(res_type: str, res_id: str, version: int = 1) -> Stored:
    return Stored(res_type, res_id, version, T0 + timedelta(minutes=version), False, b"{}", "PUT")


async def test_sessions_carry_their_caller(store: Store) -> None:
    async with store.reading(VENDOR) as r:
        assert r.caller is VENDOR
        assert r.visible(schema.resources) is None  # no policy yet: every row
    async with store.writing(VENDOR) as w:
        assert w.caller is VENDOR
        await w.put(stored("Slot", "s1"), {}, None)
    async with store.reading() as r:
        assert r.caller is SYSTEM  # the server's own work, when no caller is given
    read = await store.read("Slot", "s1", VENDOR)
    assert read is not None and read.res_id == "s1"


def slots_only_for_vendors(caller: Caller, rows: FromClause) -> ColumnElement[bool] | None:
    """A stand-in policy for the seam: vendors see Slots only."""
    return rows.c.res_type == "Slot" if caller.role == "vendor" else None


class SlotsOnlyForVendors:
    """Mixed into a real adapter: ``slots_only_for_vendors`` in its one seam."""

    def visible(self, caller: Caller, rows: FromClause) -> ColumnElement[bool] | None:
        return slots_only_for_vendors(caller, rows)


class GuardedSqlite(SlotsOnlyForVendors, SqliteStore):
    pass


class GuardedPostgres(SlotsOnlyForVendors, PostgresStore):
    pass


async def open_guarded(database_url: str) -> Store:
    """A migrated real store of the engine of ``database_url``, with the stand-in policy."""
    s: Store = (
        GuardedSqlite(database_url)
        if database_url.startswith("sqlite")
        else GuardedPostgres(database_url, pool_size=5)
    )
    await s.migrate()
    return s


@pytest.fixture
async def guarded(database_url: str) -> AsyncIterator[Store]:
    s = await open_guarded(database_url)
    async with s.writing() as w:
        await w.put(stored("Slot", "s1"), {}, None)
        await w.put(stored("Practitioner", "p1"), {}, None)
    try:
        yield s
    finally:
        await s.close()


async def test_the_seam_limits_every_select_of_the_store(guarded: Store) -> None:
    assert await guarded.read("Practitioner", "p1", VENDOR) is None
    assert await guarded.read("Practitioner", "p1", ADMIN) is not None
    assert await guarded.read("Slot", "s1", VENDOR) is not None
    assert await guarded.vread("Practitioner", "p1", 1, VENDOR) is None
    assert await guarded.vread("Practitioner", "p1", 1) is not None
    seen = await guarded.history(
        res_type=None, res_id=None, since=None, at=None, count=10, offset=0, caller=VENDOR
    )
    assert [e.res_type for e in seen.entries] == ["Slot"] and seen.total == 1
    async with guarded.writing(VENDOR) as w:
        assert await w.current("Practitioner", "p1") is None
        assert [s.res_id for s in await w.scan(None, 0, 10)] == ["s1"]
    async with guarded.writing(ADMIN) as w:
        assert await w.current("Practitioner", "p1") is not None


async def test_search_statements_add_the_seam_through_the_session(guarded: Store) -> None:
    for caller, expected in ((VENDOR, ["s1"]), (ADMIN, ["p1", "s1"])):
        async with guarded.reading(caller) as r:
            stmt = select(*STORED_COLUMNS)
            only = r.visible(schema.resources)
            if only is not None:
                stmt = stmt.where(only)
            found = sorted(stored_from_row(row).res_id for row in await r.fetch(stmt))
        assert found == expected
