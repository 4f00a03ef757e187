"""Change keys (``search.watch``): what the indexer writes, and what migration 0004 fills."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command

from fhir_server.core.fhirtime import PARIS
from fhir_server.interactions import update
from fhir_server.interactions.context import Context
from fhir_server.search.indexing import watch
from fhir_server.search.indexing.indexer import index_resource
from fhir_server.search.registry.parameters import default_registry
from fhir_server.storage import migrate, schema
from fhir_server.storage.sqlite import SqliteStore

RPPS = "urn:oid:1.2.250.1.71.4.2.1"
SCHEDULE = {
    "resourceType": "Schedule",
    "id": "s1",
    "actor": [
        {"reference": "Practitioner/p1"},
        {"reference": "https://elsewhere/Practitioner/p2"},
        {"reference": "Location/l1"},
    ],
}
SLOT = {
    "resourceType": "Slot",
    "id": "a",
    "schedule": {"reference": "Schedule/s1"},
    "status": "free",
    "start": "2024-06-03T08:00:00+02:00",
    "end": "2024-06-03T08:15:00+02:00",
}
PRACTITIONER = {
    "resourceType": "Practitioner",
    "id": "p1",
    "identifier": [{"system": RPPS, "value": "810000000001"}, {"value": "no-system"}],
}


def keys(resource: dict[str, object]) -> set[str]:
    rows = index_resource(default_registry(), resource)
    return {r["key"] for r in rows.get(watch.KIND, [])}


def test_keys_of_each_watched_type() -> None:
    assert keys(SLOT) == {"Schedule/s1"}
    assert keys({**SLOT, "schedule": {"reference": "https://elsewhere/Schedule/s1"}}) == set()
    assert keys(SCHEDULE) == {
        "Schedule/s1",
        "Schedule?actor=Practitioner/p1",
        "Schedule?actor=Location/l1",
    }
    assert keys(PRACTITIONER) == {f"Practitioner?identifier={RPPS}|810000000001"}
    assert keys({"resourceType": "Location", "id": "l1", "name": "x"}) == set()


async def test_migration_0004_fills_what_the_indexer_writes(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/w.sqlite"
    store = SqliteStore(url)
    await store.migrate()
    # SCHEDULE names a Location it does not create: no referential integrity
    ctx = Context(
        store=store, registry=default_registry(), timezone=PARIS, referential_integrity=False
    )
    for resource in (PRACTITIONER, SCHEDULE, SLOT, {**SLOT, "id": "b"}):
        await update.update(ctx, str(resource["resourceType"]), str(resource["id"]), resource)
    await store.close()

    engine = sa.create_engine(f"sqlite:///{tmp_path}/w.sqlite")
    columns = (schema.idx_watch.c.res_pk, schema.idx_watch.c.param, schema.idx_watch.c.key)
    with engine.begin() as conn:
        written = set(conn.execute(sa.select(*columns)).all())
        command.downgrade(migrate.alembic_config(conn), "0003")
        migrate.upgrade(conn)
        filled = set(conn.execute(sa.select(*columns)).all())
    assert len(written) == 6  # p1: 1, s1: 3, each slot: 1
    assert filled == written
