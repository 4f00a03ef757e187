"""The context's caller reaches the storage: reads and writes are done for the request's
caller, so an access policy in the store's one seam applies to every interaction.

The store is the real adapter with the default access policy (``auth/policy.py``): a
vendor sees and changes only what it wrote.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from fhir_server.core import errors
from fhir_server.core.caller import Caller
from fhir_server.core.fhirtime import PARIS
from fhir_server.interactions import history, read, update
from fhir_server.interactions.context import Context
from fhir_server.search.registry.parameters import default_registry
from tests.storage.test_access import open_migrated

VENDOR = Caller(role="vendor", client_id="agenda-pro")
PRACTITIONER = {"resourceType": "Practitioner", "id": "p1", "active": True}


@pytest.fixture
async def admin(database_url: str) -> AsyncIterator[Context]:
    store = await open_migrated(database_url)
    ctx = Context(store=store, registry=default_registry(), timezone=PARIS)
    await update.update(ctx, "Practitioner", "p1", PRACTITIONER)
    try:
        yield ctx
    finally:
        await store.close()


def test_the_caller_is_the_contexts_role() -> None:
    ctx = Context(store=None, registry=default_registry(), timezone=PARIS)  # type: ignore[arg-type]
    assert ctx.caller.role == "admin"
    assert ctx.acting_as("vendor").caller.role == "vendor"


async def test_reads_are_done_for_the_contexts_caller(admin: Context) -> None:
    vendor = admin.acting_for(VENDOR)
    assert (await read.read(admin, "Practitioner", "p1")).res_id == "p1"
    with pytest.raises(errors.NotFound):
        await read.read(vendor, "Practitioner", "p1")
    with pytest.raises(errors.NotFound):
        await read.vread(vendor, "Practitioner", "p1", "1")
    assert (await history.history(admin, None, None, {})).page.total == 1
    assert (await history.history(vendor, None, None, {})).page.total == 0


async def test_writes_are_done_for_the_contexts_caller(admin: Context) -> None:
    # A vendor's write reads p1 (a write session reads every row) and the access policy
    # refuses the change: p1 is not the vendor's (it has no owner: the admin wrote it).
    vendor = admin.acting_for(VENDOR)
    with pytest.raises(errors.Forbidden):
        await update.update(vendor, "Practitioner", "p1", PRACTITIONER)
    updated = await update.update(admin, "Practitioner", "p1", PRACTITIONER)
    assert updated.stored.version == 2 and not updated.created
