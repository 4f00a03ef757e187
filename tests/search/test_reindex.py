"""Reindexing stored resources after the search parameter definitions changed, on SQLite and
PostgreSQL: new parameters get rows, stale rows go, deleted resources are left alone, batches
are bounded, and an update racing the reindex keeps its fresh rows."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

import profiles
from fhir_server.cli import app as cli_app
from fhir_server.search.indexing.indexer import index_resource
from fhir_server.search.indexing.reindex import count_current, reindex
from fhir_server.search.registry.parameters import Registry, SearchParameter
from fhir_server.storage import schema
from fhir_server.storage.port import Store, Stored

EXT = "http://hl7.org/fhir/5.0/StructureDefinition/extension-Slot.serviceType"
SERVICE_TYPE_REFERENCE = SearchParameter(
    "service-type-reference",
    "reference",
    f"serviceType.extension.where(url='{EXT}').value",
    target=("HealthcareService",),
)
T0 = datetime(2024, 6, 1, 8, 0, tzinfo=UTC)


def r4() -> Registry:
    return Registry(profiles.r4_search_parameters())


def with_sas() -> Registry:
    registry = r4()
    registry.add("Slot", SERVICE_TYPE_REFERENCE)
    return registry


def cpts_slot(sid: str, service: str, status: str = "free") -> dict[str, Any]:
    """Shaped like the SAS CPTS slots: the HealthcareService hides in a serviceType extension."""
    return {
        "resourceType": "Slot",
        "id": sid,
        "serviceType": [
            {
                "extension": [
                    {"url": EXT, "valueReference": {"reference": f"HealthcareService/{service}"}}
                ],
                "coding": [{"system": "http://x/categorie", "code": "604"}],
            }
        ],
        "schedule": {"reference": "Schedule/sched-1"},
        "status": status,
        "start": "2024-06-12T16:40:00.000+02:00",
        "end": "2024-06-12T17:00:00.000+02:00",
    }


async def put(store: Store, registry: Registry, *resources: dict[str, Any]) -> None:
    async with store.writing() as session:
        for i, resource in enumerate(resources):
            stored = Stored(
                resource["resourceType"],
                resource["id"],
                1,
                T0 + timedelta(seconds=i),
                False,
                json.dumps(resource).encode(),
                "POST",
            )
            await session.put(stored, index_resource(registry, resource), None)


async def update(
    store: Store, registry: Registry, res_type: str, res_id: str, **changes: Any
) -> None:
    async with store.writing() as session:
        current = await session.current(res_type, res_id)
        assert current is not None
        resource = {**json.loads(current.content), **changes}
        stored = Stored(
            res_type,
            res_id,
            current.version + 1,
            current.last_updated + timedelta(seconds=1),
            False,
            json.dumps(resource).encode(),
            "PUT",
        )
        await session.put(stored, index_resource(registry, resource), current)


async def delete(store: Store, res_type: str, res_id: str) -> None:
    async with store.writing() as session:
        current = await session.current(res_type, res_id)
        assert current is not None
        stored = Stored(
            res_type,
            res_id,
            current.version + 1,
            current.last_updated + timedelta(seconds=1),
            True,
            current.content,
            "DELETE",
        )
        await session.put(stored, {}, current)


async def rows(store: Store, kind: str, param: str) -> list[tuple[Any, ...]]:
    """(res_id, values...) of one parameter's index rows, sorted."""
    table, res = schema.INDEX_TABLES[kind], schema.resources
    values = [c for c in table.c if c.name not in ("res_pk", "res_type", "param")]
    stmt = (
        select(res.c.res_id, *values)
        .join(res, res.c.pk == table.c.res_pk)
        .where(table.c.param == param)
    )
    async with store.reading() as session:
        found = await session.fetch(stmt)
    return sorted(tuple(r) for r in found)


async def test_reindex_adds_the_rows_of_a_new_parameter(store: Store) -> None:
    await put(store, r4(), cpts_slot("s1", "hs1"), cpts_slot("s2", "hs2"))
    assert await rows(store, "reference", "service-type-reference") == []
    statuses = await rows(store, "token", "status")

    report = await reindex(store, with_sas())

    assert (report.resources, report.batches) == (2, 1)
    assert await rows(store, "reference", "service-type-reference") == [
        ("s1", "HealthcareService", "hs1", None),
        ("s2", "HealthcareService", "hs2", None),
    ]
    assert await rows(store, "token", "status") == statuses  # replaced, not duplicated


async def test_reindex_removes_rows_of_a_parameter_that_is_gone(store: Store) -> None:
    await put(store, with_sas(), cpts_slot("s1", "hs1"))
    assert await rows(store, "reference", "service-type-reference")
    await reindex(store, r4())
    assert await rows(store, "reference", "service-type-reference") == []
    assert await rows(store, "reference", "schedule") == [("s1", "Schedule", "sched-1", None)]


async def test_batches_types_and_deleted_resources(store: Store) -> None:
    slots = [cpts_slot(f"s{i}", f"hs{i}") for i in range(5)]
    schedule = {
        "resourceType": "Schedule",
        "id": "sched-1",
        "actor": [{"reference": "Location/l1"}],
    }
    await put(store, r4(), *slots, schedule)
    await delete(store, "Slot", "s3")
    assert await count_current(store) == 5
    assert await count_current(store, "Slot") == 4

    done: list[int] = []
    report = await reindex(store, with_sas(), res_type="Slot", batch_size=2, progress=done.append)

    assert done == [2, 2] and report.resources == 4 and report.batches == 2
    found = await rows(store, "reference", "service-type-reference")
    assert [r[0] for r in found] == ["s0", "s1", "s2", "s4"]  # the deleted s3 stays unindexed
    assert await rows(store, "reference", "actor") == [("sched-1", "Location", "l1", None)]
    with pytest.raises(ValueError):
        await reindex(store, r4(), batch_size=0)


async def test_an_update_racing_the_reindex_keeps_its_rows(store: Store) -> None:
    """Each batch locks its rows: the reindex never writes rows of a version it did not read."""
    registry = with_sas()
    ids = [f"s{i}" for i in range(30)]
    await put(store, r4(), *(cpts_slot(i, "hs") for i in ids))

    async def updates() -> None:
        for sid in ids:
            await update(store, registry, "Slot", sid, status="busy")
            await asyncio.sleep(0)

    await asyncio.gather(reindex(store, registry, batch_size=1), updates())

    assert await rows(store, "token", "status") == [
        (sid, None, "busy", None) for sid in sorted(ids)
    ]
    refs = await rows(store, "reference", "service-type-reference")
    assert [r[0] for r in refs] == sorted(ids)


def test_the_reindex_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fhir_server.storage.sqlite import SqliteStore

    url = f"sqlite+aiosqlite:///{tmp_path}/fhir.sqlite"

    async def setup() -> None:
        store = SqliteStore(url)
        await store.migrate()
        await put(store, r4(), cpts_slot("s1", "hs1"))
        await store.close()

    asyncio.run(setup())
    monkeypatch.setenv("FHIR_DATABASE_URL", url)
    monkeypatch.setenv("FHIR_PACKAGE_PATH", str(tmp_path / "no-packages"))
    runner = CliRunner()
    # No SAS package here: reindex refuses unless told to go on with R4 only.
    result = runner.invoke(cli_app, ["reindex", "--type", "Slot", "--allow-missing-packages"])
    assert result.exit_code == 0, result.output
    assert "reindexed 1 resource(s)" in result.output
    bad = runner.invoke(cli_app, ["reindex", "--type", "Patient"])
    assert bad.exit_code == 2 and "Patient is not served" in bad.output
