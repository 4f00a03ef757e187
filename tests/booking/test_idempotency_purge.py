"""An ``Idempotency-Key`` purged after its lifetime (``fhir-server purge``, the senders'
housekeeping) on both engines: the retry runs again as a new request, and books nothing
twice: a conditional create (``If-None-Exist`` on the appointment's identifier) answers
the appointment made, a plain one finds the slot busy."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from fhir_server.app import purge_targets
from fhir_server.core.fhirtime import utcnow
from fhir_server.delivery.retention import purge
from fhir_server.settings import Settings
from fhir_server.storage.port import Store
from fhir_server.storage.schema import idempotency_keys
from tests.api.test_policy import Api
from tests.booking.conftest import appointments, at, booking, put_slot, send, slot_status

IDENTIFIER = {"system": "urn:oid:1.2.250.1.999", "value": "rdv-purge-1"}


async def expire_and_purge(store: Store) -> int:
    """The key records aged past FHIR_IDEMPOTENCY_KEY_HOURS, then purged; how many went."""
    old = utcnow() - timedelta(hours=25)
    async with store.writing() as session:
        await session.execute(update(idempotency_keys).values(created=old))
    done = await purge(store, purge_targets(Settings(idempotency_key_hours=24)))
    async with store.reading() as session:
        assert await session.fetch(select(idempotency_keys.c.key)) == []
    return done.counts["idempotency keys"]


async def test_a_retry_after_the_purge_books_nothing_twice(api: Api, store: Store) -> None:
    slot = await put_slot(api, "s1", at(48))
    payload = booking(slot, identifier=[IDENTIFIER])
    conditional = {
        "Idempotency-Key": "k-1",
        "If-None-Exist": f"identifier={IDENTIFIER['system']}|{IDENTIFIER['value']}",
    }
    first = await send(api, "regulator", "POST", "/Appointment", payload, **conditional)
    assert first.status_code == 201, first.text
    assert await expire_and_purge(store) == 1
    # conditional: the identifier finds the appointment made (200, no second booking)
    again = await send(api, "regulator", "POST", "/Appointment", payload, **conditional)
    assert again.status_code == 200, again.text
    assert "Idempotent-Replayed" not in again.headers  # run again, not replayed
    assert again.json()["id"] == first.json()["id"]
    # plain: the slot is busy (409), nothing stored
    assert await expire_and_purge(store) == 1
    plain = await send(
        api, "regulator", "POST", "/Appointment", payload, **{"Idempotency-Key": "k-1"}
    )
    assert plain.status_code == 409, plain.text
    assert len(await appointments(api)) == 1
    assert await slot_status(api, "s1") == ("busy", "2")
