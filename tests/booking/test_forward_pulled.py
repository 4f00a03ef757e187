"""Slots pulled from a vendor's SAS FHIR API (a real loopback vendor, stored on SQLite and
PostgreSQL) are known as remote from what is stored: the booking path finds their owner
and their id there, and a booking forwarded for one reaches the owner's slot."""

from __future__ import annotations

import orjson
import pytest

from fhir_server.app import make_context
from fhir_server.booking.forward import Limits
from fhir_server.booking.remote import RemoteBooking
from fhir_server.core.caller import SYSTEM
from fhir_server.ingest.pull.owners import remote_owners
from fhir_server.interactions.context import Context
from fhir_server.storage.port import Store
from tests.booking.pulled import pull_two_slots
from tests.booking.test_forward import appointment
from tests.booking.vendor import vendor_server
from tests.ingest.conftest import ingest_settings

LIMITS = Limits(timeout=2.0, retries=1, deadline=4.0, backoff=0.02)


@pytest.fixture
def ctx(store: Store) -> Context:
    """A context with SAS-profile validation, as ingestion and pull mode use it."""
    return make_context(ingest_settings(), store)


async def test_pulled_slots_are_known_as_the_vendor_s(ctx: Context, store: Store) -> None:
    with vendor_server() as vendor:
        source = await pull_two_slots(ctx, store, vendor)
        booking = RemoteBooking(remote_owners([source], LIMITS))
        owners = {}
        for rid in ("v-1", "v-2"):
            ours = f"agenda-slot-{rid}"
            stored = await store.read("Slot", ours, SYSTEM)
            assert stored is not None, ours
            slot = orjson.loads(stored.content)
            found = booking.owner_of(slot)
            assert found is not None
            owners[rid] = (found[0].name, found[1])
        assert owners == {"v-1": ("agenda", "v-1"), "v-2": ("agenda", "v-2")}
        slot = orjson.loads((await store.read("Slot", "agenda-slot-v-2", SYSTEM)).content)
        local = await booking.book(slot, appointment())
        assert local is not None
        assert list(vendor.taken) == ["v-2"]  # the owner's slot, by the owner's id
