"""What makes bulk writes cheap (``fhir-server load``): current versions read a few hundred
at a time (``WriteSession.prefetch``), and on SQLite the creates of client-chosen ids that it
found free buffered like the others (writers are serialized there: no other transaction can
create such an id meanwhile)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event

from fhir_server.storage.port import Store, Stored

T0 = datetime(2026, 6, 1, tzinfo=UTC)


def org(res_id: str, version: int = 1, method: str = "PUT") -> Stored:
    body = f'{{"resourceType":"Organization","id":"{res_id}","name":"v{version}"}}'.encode()
    return Stored("Organization", res_id, version, T0, False, body, method)


@contextmanager
def statements(store: Store) -> Iterator[list[str]]:
    """The statements the store sends (through SQLAlchemy) meanwhile."""
    seen: list[str] = []
    engines = {id(e): e for e in (store.engine, store.read_engine)}  # type: ignore[attr-defined]

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    for engine in engines.values():
        event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        for engine in engines.values():
            event.remove(engine.sync_engine, "before_cursor_execute", record)


async def test_prefetched_versions_answer_current(store: Store) -> None:
    async with store.writing() as session:
        for n in range(3):
            await session.put(org(f"o{n}"), {}, None)
    async with store.writing() as session:
        keys = [("Organization", f"o{n}") for n in range(5)] + [("Practitioner", "o1")]
        with statements(store) as sent:
            await session.prefetch(keys)
        assert len(sent) == 1  # one statement whatever the types
        with statements(store) as sent:
            found = [await session.current(t, i) for t, i in keys]
        assert sent == []
        assert [s.version if s else None for s in found] == [1, 1, 1, None, None, None]
        o1 = found[1]
        assert o1 is not None and o1.content.endswith(b'"v1"}')
        await session.put(org("o1", 2), {}, o1)
        await session.put(org("o3"), {}, None)
        written = await session.current("Organization", "o1")  # read again: this session wrote
        assert written is not None and written.version == 2
        created = await session.current("Organization", "o3")
        assert created is not None and created.version == 1
    assert (await store.read("Organization", "o1")).version == 2  # type: ignore[union-attr]


async def test_creates_of_chosen_ids(store: Store) -> None:
    """Such a create is written at once (a concurrent create of the id must fail at ``put``,
    for update-as-create), unless SQLite's prefetch found the id free."""
    async with store.writing() as session:
        await session.prefetch([("Organization", "o1")])
        with statements(store) as sent:
            await session.put(org("o1"), {}, None)
            await session.put(org("o2"), {}, None)  # not prefetched
        assert len(sent) == (1 if store.dialect == "sqlite" else 2)
    assert await store.read("Organization", "o1") is not None
