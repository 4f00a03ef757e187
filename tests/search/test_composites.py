"""``idx_ref_date``: the fused (schedule, start) scan answers exactly what separate reference
and date criteria answer, on SQLite and PostgreSQL, for every date prefix and precision."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from alembic import command

from fhir_server.core.fhirtime import PARIS
from fhir_server.search.indexing import composites
from fhir_server.search.indexing.indexer import index_resource
from fhir_server.search.query import parse, plan
from fhir_server.search.registry.parameters import default_registry
from fhir_server.storage import migrate, schema
from fhir_server.storage.port import Store, Stored

if TYPE_CHECKING:
    from conftest import Searcher

RPPS = "urn:oid:1.2.250.1.71.4.2.1"
# Starts on both sides of the window edges below, at several precisions and offsets.
STARTS = [
    "2024-06-03T07:59:59+02:00",
    "2024-06-03T08:00:00+02:00",
    "2024-06-03T08:00:00.000+02:00",
    "2024-06-03T06:00:00.001Z",
    "2024-06-03T08:00:00.999+02:00",
    "2024-06-03T08:00:01+02:00",
    "2024-06-03T12:30:00+02:00",
    "2024-06-04T23:59:59.999+02:00",
    "2024-06-05T00:00:00+02:00",
    "2024-06-05T10:15:00+02:00",
    "2024-05-20T10:15:00+02:00",
]
VALUES = [
    "2024-06-03T08:00:00",
    "2024-06-03T08:00:00.000+02:00",
    "2024-06-03T06:00:00Z",
    "2024-06-03T08:00",
    "2024-06-03",
    "2024-06-04",
    "2024-06",
]
PREFIXES = ["", "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"]
REFERENCES = [
    ("schedule", "Schedule/s1"),
    ("schedule", "s1,Schedule/s2"),
    ("schedule.actor:Practitioner.identifier", f"{RPPS}|810000000001"),
    ("schedule.actor:Practitioner.identifier", f"{RPPS}|810000000001,{RPPS}|810000000002"),
]


def data() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"resourceType": "Practitioner", "id": f"p{n}", "identifier": [_rpps(n)]} for n in (1, 2)
    ]
    out += [
        {"resourceType": "Schedule", "id": "s1", "actor": [{"reference": "Practitioner/p1"}]},
        {"resourceType": "Schedule", "id": "s2", "actor": [{"reference": "Practitioner/p2"}]},
        {"resourceType": "Schedule", "id": "s3", "actor": [{"reference": "Practitioner/p2"}]},
    ]
    schedules = ["Schedule/s1", "Schedule/s2", "Schedule/s3", "https://elsewhere/Schedule/s1"]
    for i, (start, target) in enumerate(itertools.product(STARTS, schedules)):
        end = datetime.fromisoformat(start.replace("Z", "+00:00")) + timedelta(minutes=15)
        out.append(
            {
                "resourceType": "Slot",
                "id": f"slot{i}",
                "schedule": {"reference": target},
                "status": "free" if i % 3 else "busy",
                "start": start,
                "end": end.isoformat(),
            }
        )
    return out


def _rpps(n: int) -> dict[str, str]:
    return {"system": RPPS, "value": f"81000000000{n}"}


def test_pair_rows_only_for_relative_references() -> None:
    registry = default_registry()
    slot = {
        "resourceType": "Slot",
        "id": "x",
        "schedule": {"reference": "Schedule/s1"},
        "status": "free",
        "start": "2024-06-03T08:00:00+02:00",
        "end": "2024-06-03T08:15:00+02:00",
    }
    rows = index_resource(registry, slot)[composites.KIND]
    assert rows == [
        {
            "param": "schedule+start",
            "target_type": "Schedule",
            "target_id": "s1",
            "low": datetime(2024, 6, 3, 6, 0, tzinfo=UTC),
            "high": datetime(2024, 6, 3, 6, 0, 1, tzinfo=UTC),
        }
    ]
    elsewhere = {**slot, "schedule": {"reference": "https://elsewhere/Schedule/s1"}}
    assert composites.KIND not in index_resource(registry, elsewhere)


async def _answers(searcher: Searcher, queries: list[tuple[str, str]]) -> list[list[str]]:
    return [await searcher.ids(res_type, query) for res_type, query in queries]


async def test_fused_scan_matches_separate_criteria(
    searcher: Searcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    searcher.registry = default_registry()
    await searcher.put(*data())
    queries = [
        ("Slot", f"{name}={ref}&start={prefix}{value}")
        for name, ref in REFERENCES
        for prefix in PREFIXES
        for value in VALUES
    ]
    queries += [
        ("Slot", f"schedule=Schedule/s1&start=ge{low}&start=le{high}&status=free")
        for low, high in itertools.combinations(VALUES, 2)
    ]
    queries += [
        ("Schedule", f"_has:Slot:schedule:start={prefix}{value}&_has:Slot:schedule:status=free")
        for prefix in PREFIXES
        for value in VALUES
    ]
    query = parse.parse(
        searcher.registry, "Slot", [("schedule", "s1"), ("start", "ge2024")], default_tz=PARIS
    )
    assert "idx_ref_date" in plan.explain(query)

    fused = await _answers(searcher, queries)
    monkeypatch.setattr(composites, "PAIRS", {})
    assert "idx_ref_date" not in plan.explain(query)
    separate = await _answers(searcher, queries)
    wrong = [
        f"{q}: fused {f}, separate {s}"
        for q, f, s in zip(queries, fused, separate, strict=True)
        if f != s
    ]
    assert not wrong, "\n".join(wrong[:20])
    assert sum(1 for f in fused if f) > len(queries) // 3  # the grid does find slots


async def test_pair_rows_follow_updates_and_deletes(searcher: Searcher, store: Store) -> None:
    searcher.registry = default_registry()
    await searcher.put(*data()[:6])
    first = data()[5]  # slot0: schedule s1, 2024-06-03T07:59:59+02:00
    window = "schedule=Schedule/s1&start=ge2024-06-10T00:00:00&start=le2024-06-10T23:59:59"
    assert await searcher.ids("Slot", window) == []
    moved = {**first, "start": "2024-06-10T09:00:00+02:00", "end": "2024-06-10T09:15:00+02:00"}
    await _write(store, moved, version=2)
    assert await searcher.ids("Slot", window) == ["slot0"]
    await _write(store, moved, version=3, deleted=True)
    assert await searcher.ids("Slot", window) == []


async def _write(
    store: Store, resource: dict[str, Any], version: int, deleted: bool = False
) -> None:
    async with store.writing() as session:
        previous = await session.current(resource["resourceType"], resource["id"])
        stored = Stored(
            resource["resourceType"],
            resource["id"],
            version,
            datetime.now(UTC),
            deleted,
            json.dumps(resource).encode(),
            "DELETE" if deleted else "PUT",
        )
        rows = {} if deleted else index_resource(default_registry(), resource)
        await session.put(stored, rows, previous)


def test_migration_0002_fills_pairs_from_existing_rows(tmp_path: Any) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path}/m.sqlite")
    with engine.begin() as conn:
        command.upgrade(migrate.alembic_config(conn), "0001")
        low = datetime(2024, 6, 3, 6, 0, tzinfo=UTC)
        conn.execute(
            sa.text(
                "INSERT INTO resources (pk, res_type, res_id, version, last_updated, deleted,"
                " content) VALUES (1, 'Slot', 'a', 1, :t, false, x'7b7d'),"
                " (2, 'Slot', 'b', 1, :t, false, x'7b7d')"
            ),
            {"t": low},
        )
        conn.execute(
            sa.text(
                "INSERT INTO idx_reference (res_pk, res_type, param, target_type, target_id, url)"
                " VALUES (1, 'Slot', 'schedule', 'Schedule', 's1', NULL),"
                " (2, 'Slot', 'schedule', 'Schedule', 's1', 'https://x/Schedule/s1')"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO idx_date (res_pk, res_type, param, low, high) VALUES"
                " (1, 'Slot', 'start', :low, :high), (2, 'Slot', 'start', :low, :high)"
            ),
            {"low": low, "high": low + timedelta(seconds=1)},
        )
        migrate.upgrade(conn)
        rows = conn.execute(sa.select(schema.idx_ref_date)).all()
    assert [(r.res_pk, r.param, r.target_type, r.target_id) for r in rows] == [
        (1, "schedule+start", "Schedule", "s1")
    ]
