"""The write path queues SAS appointments in its own transaction (SQLite and PostgreSQL)."""

from __future__ import annotations

import orjson
import pytest
from sqlalchemy import select

from fhir_server.core import errors
from fhir_server.core.fhirtime import PARIS
from fhir_server.delivery.sas import SasOutbox
from fhir_server.interactions import create, delete, update
from fhir_server.interactions.context import Context
from fhir_server.search.registry.parameters import default_registry
from fhir_server.storage import schema
from fhir_server.storage.port import Store
from tests.delivery.appointments import SYSTEM, plain_appointment, sas_appointment


def context(store: Store, wakes: list[str]) -> Context:
    outbox = SasOutbox(SYSTEM, wake=lambda: wakes.append("wake"))
    return Context(store=store, registry=default_registry(), timezone=PARIS, write_hooks=(outbox,))


async def queued(store: Store) -> list[tuple[str, int, str, bytes]]:
    d = schema.deliveries.c
    async with store.reading() as session:
        rows = await session.fetch(select(d.key, d.version, d.headers, d.body).order_by(d.id))
    return [(r[0], r[1], orjson.loads(r[2])["method"], r[3]) for r in rows]


async def test_create_update_delete_queue_each_version(store: Store) -> None:
    wakes: list[str] = []
    ctx = context(store, wakes)
    made = await create.create(ctx, "Appointment", sas_appointment())
    res_id = made.stored.res_id
    await update.update(
        ctx, "Appointment", res_id, {**sas_appointment(status="cancelled"), "id": res_id}
    )
    await create.create(ctx, "Appointment", plain_appointment())  # not a SAS one
    await delete.delete(ctx, "Appointment", res_id)  # cancelled already: nothing new
    found = await queued(store)
    assert [(k, v, m) for k, v, m, _ in found] == [
        (f"Appointment/{res_id}", 1, "POST"),
        (f"Appointment/{res_id}", 2, "PUT"),
    ]
    assert orjson.loads(found[1][3])["status"] == "cancelled"
    assert wakes == ["wake", "wake"]  # once per committed write that queued


async def test_a_write_that_fails_queues_nothing_and_wakes_no_one(store: Store) -> None:
    wakes: list[str] = []
    ctx = context(store, wakes)
    body = sas_appointment()
    # refused after the version and its message were written: referential integrity
    body["participant"].append(
        {"actor": {"reference": "Practitioner/missing"}, "status": "accepted"}
    )
    with pytest.raises(errors.FhirError):
        await create.create(ctx, "Appointment", body)
    assert await queued(store) == []
    assert wakes == []
    async with store.reading() as session:
        assert not await session.fetch(select(schema.resources.c.pk))


async def test_no_hooks_no_queue(store: Store) -> None:
    ctx = Context(store=store, registry=default_registry(), timezone=PARIS)
    await create.create(ctx, "Appointment", sas_appointment())
    assert await queued(store) == []


async def test_a_transaction_queues_all_or_nothing(store: Store) -> None:
    from fhir_server.interactions import transaction

    wakes: list[str] = []
    ctx = context(store, wakes)

    def bundle(*bodies: dict[str, object]) -> dict[str, object]:
        entries = [
            {"resource": b, "request": {"method": "POST", "url": "Appointment"}} for b in bodies
        ]
        return {"resourceType": "Bundle", "type": "transaction", "entry": entries}

    broken = sas_appointment("t-3")
    broken["participant"].append({"actor": {"reference": "Practitioner/missing"}})
    with pytest.raises(errors.FhirError):
        await transaction.process(ctx, bundle(sas_appointment("t-1"), broken), "http://x")
    assert await queued(store) == [] and wakes == []
    await transaction.process(
        ctx, bundle(sas_appointment("t-1"), sas_appointment("t-2")), "http://x"
    )
    assert [m for _, _, m, _ in await queued(store)] == ["POST", "POST"]
    assert wakes == ["wake", "wake"]
