"""The storage contract, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from fhir_server.core.errors import Conflict
from fhir_server.storage import schema
from fhir_server.storage.port import Store, Stored

T0 = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)


def version(
    n: int, *, deleted: bool = False, content: bytes = b'{"resourceType":"Slot"}'
) -> Stored:
    return Stored("Slot", "s1", n, T0 + timedelta(minutes=n), deleted, content, "PUT")


async def test_put_read_vread_history(store: Store) -> None:
    async with store.writing() as s:
        await s.put(
            version(1),
            {"token": [{"param": "status", "system": None, "code": "free", "text": None}]},
            None,
        )
    async with store.writing() as s:
        prev = await s.current("Slot", "s1")
        assert prev is not None and prev.version == 1
        await s.put(version(2, content=b'{"v":2}'), {}, prev)
    current = await store.read("Slot", "s1")
    assert current is not None and current.version == 2 and current.content == b'{"v":2}'
    assert current.last_updated == T0 + timedelta(minutes=2)
    first = await store.vread("Slot", "s1", 1)
    assert first is not None and first.content == b'{"resourceType":"Slot"}'
    page = await store.history(
        res_type="Slot", res_id="s1", since=None, at=None, count=10, offset=0
    )
    assert [e.version for e in page.entries] == [2, 1] and page.total == 2
    # the index rows of version 1 were replaced by those of version 2 (none)
    async with store.reading() as r:
        rows = await r.fetch(select(schema.idx_token))
    assert rows == []


async def test_failed_transaction_leaves_nothing(store: Store) -> None:
    with pytest.raises(RuntimeError):
        async with store.writing() as s:
            await s.put(version(1), {}, None)
            raise RuntimeError("boom")
    assert await store.read("Slot", "s1") is None
    page = await store.history(res_type=None, res_id=None, since=None, at=None, count=10, offset=0)
    assert page.total == 0


async def test_second_create_of_same_id_conflicts(store: Store) -> None:
    async with store.writing() as s:
        await s.put(version(1), {}, None)
    with pytest.raises(Conflict):
        async with store.writing() as s:
            await s.put(version(1), {}, None)


async def test_stale_previous_version_conflicts(store: Store) -> None:
    async with store.writing() as s:
        await s.put(version(1), {}, None)
    stale = await store.read("Slot", "s1")
    async with store.writing() as s:
        await s.put(version(2), {}, await s.current("Slot", "s1"))
    with pytest.raises(Conflict):
        async with store.writing() as s:
            await s.put(version(3), {}, stale)


async def test_history_since(store: Store) -> None:
    async with store.writing() as s:
        await s.put(version(1), {}, None)
        await s.put(
            Stored("Slot", "s2", 1, T0 + timedelta(hours=1), False, b"{}", "POST"), {}, None
        )
    page = await store.history(
        res_type="Slot", res_id=None, since=T0 + timedelta(minutes=30), at=None, count=10, offset=0
    )
    assert [e.res_id for e in page.entries] == ["s2"]
