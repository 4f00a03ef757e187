"""The access policy where rows are selected: ``SqlStore.visible`` and the owner and labels
that writes record, on both engines and their fast paths.

Rows are written straight through the port (owner and labels as the interactions stamp
them), then read for callers of each role: a vendor sees its own rows, a regulator the Slots
of its labels, a caller with SMART scopes the types they grant.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from auth.policy import Policy
from fhir_server.core.caller import SYSTEM, Caller
from fhir_server.storage import schema
from fhir_server.storage.port import Store, Stored
from fhir_server.storage.postgres import PostgresStore
from fhir_server.storage.rows import STORED_COLUMNS, stored_from_row
from fhir_server.storage.sqlite import SqliteStore

T0 = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)
VENDOR = Caller(role="vendor", client_id="agenda-pro", user_id="810001234567")
OTHER_VENDOR = Caller(role="vendor", client_id="agenda-two")
REGULATOR = Caller(role="regulator", client_id="regulation-sw", user_id="810009999999")
PLATFORM = Caller(role="platform", client_id="sas-platform")
ADMIN = Caller(role="admin")
SLOTS_ONLY = Caller(
    role="platform", client_id="sas-platform", scopes=frozenset({"system/Slot.read"})
)


def stored(
    res_type: str,
    res_id: str,
    version: int = 1,
    *,
    owner: str | None = None,
    labels: str | None = None,
) -> Stored:
    when = T0 + timedelta(minutes=version)
    return Stored(res_type, res_id, version, when, False, b"{}", "PUT", owner=owner, labels=labels)


async def open_migrated(database_url: str, policy: Policy | None = None) -> Store:
    """A migrated real store of the engine of ``database_url`` with ``policy``."""
    s: Store = (
        SqliteStore(database_url, policy=policy)
        if database_url.startswith("sqlite")
        else PostgresStore(database_url, pool_size=5, policy=policy)
    )
    await s.migrate()
    return s


@pytest.fixture
async def rows(database_url: str) -> AsyncIterator[Store]:
    s = await open_migrated(database_url)
    async with s.writing() as w:
        await w.put(stored("Slot", "own", owner="agenda-pro", labels="|PUBLIC|"), {}, None)
        await w.put(stored("Slot", "cpts", owner="agenda-two", labels="|CPTS|"), {}, None)
        await w.put(stored("Slot", "both", owner="agenda-two", labels="|CPTS|SNP|"), {}, None)
        await w.put(stored("Slot", "bare", owner="agenda-two", labels="|UNLABELLED|"), {}, None)
        await w.put(stored("Slot", "legacy"), {}, None)  # written before labels: NULL
        await w.put(stored("Practitioner", "p1", owner="agenda-two"), {}, None)
        await w.put(stored("AuditEvent", "a1"), {}, None)
    try:
        yield s
    finally:
        await s.close()


async def visible_ids(store: Store, caller: Caller) -> list[str]:
    """What a search statement sees for ``caller`` (through ``session.visible``)."""
    async with store.reading(caller) as r:
        stmt = select(*STORED_COLUMNS)
        only = r.visible(schema.resources)
        if only is not None:
            stmt = stmt.where(only)
        return sorted(stored_from_row(row).res_id for row in await r.fetch(stmt))


async def test_each_role_sees_its_rows(rows: Store) -> None:
    assert await visible_ids(rows, VENDOR) == ["own"]
    assert await visible_ids(rows, OTHER_VENDOR) == ["bare", "both", "cpts", "p1"]
    # regulator: PUBLIC, PRO, SNP slots; any other type but AuditEvent
    assert await visible_ids(rows, REGULATOR) == ["both", "own", "p1"]
    assert await visible_ids(rows, PLATFORM) == ["bare", "both", "cpts", "legacy", "own", "p1"]
    assert await visible_ids(rows, ADMIN) == sorted(
        ["a1", "bare", "both", "cpts", "legacy", "own", "p1"]
    )
    assert await visible_ids(rows, SYSTEM) == await visible_ids(rows, ADMIN)
    assert await visible_ids(rows, SLOTS_ONLY) == ["bare", "both", "cpts", "legacy", "own"]


async def test_slot_visibility_is_configurable(database_url: str) -> None:
    policy = Policy({"regulator": ["CPTS", "UNLABELLED"]})
    s = await open_migrated(database_url, policy)
    try:
        async with s.writing() as w:
            await w.put(stored("Slot", "public", labels="|PUBLIC|"), {}, None)
            await w.put(stored("Slot", "cpts", labels="|CPTS|"), {}, None)
            await w.put(stored("Slot", "bare", labels="|UNLABELLED|"), {}, None)
            await w.put(stored("Slot", "legacy"), {}, None)
        assert await visible_ids(s, REGULATOR) == ["bare", "cpts", "legacy"]
    finally:
        await s.close()


async def test_point_reads_and_history_apply_the_policy(rows: Store) -> None:
    # read and vread take the adapters' fast paths when the whole type is visible
    assert await rows.read("Practitioner", "p1", REGULATOR) is not None
    assert await rows.read("Practitioner", "p1", VENDOR) is None
    assert await rows.read("Slot", "own", VENDOR) is not None
    assert await rows.read("Slot", "cpts", REGULATOR) is None
    assert await rows.read("Slot", "both", REGULATOR) is not None
    assert await rows.read("AuditEvent", "a1", PLATFORM) is None
    assert await rows.read("AuditEvent", "a1", ADMIN) is not None
    assert await rows.vread("Slot", "cpts", 1, REGULATOR) is None
    assert await rows.vread("Slot", "cpts", 1, OTHER_VENDOR) is not None
    assert await rows.vread("Practitioner", "p1", 1, SLOTS_ONLY) is None
    seen = await rows.history(
        res_type=None, res_id=None, since=None, at=None, count=10, offset=0, caller=VENDOR
    )
    assert [e.res_id for e in seen.entries] == ["own"] and seen.total == 1
    seen = await rows.history(
        res_type="Slot", res_id=None, since=None, at=None, count=10, offset=0, caller=REGULATOR
    )
    assert sorted(e.res_id for e in seen.entries) == ["both", "own"]


async def test_a_write_reads_every_row_with_its_owner_and_labels(rows: Store) -> None:
    async with rows.writing(VENDOR) as w:
        other = await w.current("Slot", "cpts")  # the policy decides the change, not the read
        assert other is not None and (other.owner, other.labels) == ("agenda-two", "|CPTS|")
        await w.prefetch([("Slot", "both")])
        both = await w.current("Slot", "both")
        assert both is not None and both.owner == "agenda-two"
        assert [s.res_id for s in await w.scan("Slot", 0, 10)] == ["own"]
    async with rows.writing() as w:
        previous = await w.current("Slot", "own")
        assert previous is not None
        new = stored("Slot", "own", 2, owner="agenda-pro", labels="|PRO|")
        await w.put(new, {}, previous)
    async with rows.writing() as w:
        current = await w.current("Slot", "own")
        assert current is not None and (current.owner, current.labels) == ("agenda-pro", "|PRO|")
    assert await rows.vread("Slot", "own", 1, VENDOR) is not None  # history keeps the owner
    assert await rows.vread("Slot", "own", 2, OTHER_VENDOR) is None


async def test_the_store_shares_its_policy_with_sessions(rows: Store) -> None:
    async with rows.reading(VENDOR) as r:
        assert r.caller is VENDOR
        assert r.scope.owner_only and r.scope.owner == "agenda-pro"
    async with rows.reading() as r:
        assert r.caller is SYSTEM and r.scope.everything
        assert r.visible(schema.resources) is None  # the server's own work: every row
