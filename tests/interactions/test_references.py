"""Which references are checked, and how many queries checking them costs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from sqlalchemy.sql import Executable

from fhir_server.core import errors
from fhir_server.core.fhirtime import PARIS
from fhir_server.interactions import transaction
from fhir_server.interactions.context import Context
from fhir_server.interactions.references import PendingReferences, relative_references
from fhir_server.search.registry.parameters import default_registry
from fhir_server.storage.port import Store, WriteSession


def test_relative_references_to_served_types_in_document_order() -> None:
    resource = {
        "resourceType": "Appointment",
        "participant": [
            {"actor": {"reference": "Practitioner/p1"}},
            {"actor": {"reference": "Patient/1"}},
            {"actor": {"reference": "#c"}},
            {"actor": {"reference": "http://x.example/fhir/Location/l"}},
            {"actor": {"reference": "urn:uuid:0b1c9f9e-1a2b-4c3d-8e9f-001122334455"}},
            {"actor": {"reference": "Location?identifier=x"}},
        ],
        "slot": [{"reference": "Slot/s1/_history/3"}, {"display": "a slot"}],
        "extension": [{"url": "u", "valueReference": {"reference": "Location/l1"}}],
    }
    assert list(relative_references(resource)) == [
        ("participant[0].actor", ("Practitioner", "p1")),
        ("slot[0]", ("Slot", "s1")),
        ("extension[0].valueReference", ("Location", "l1")),
    ]


class CountingSession:
    """A real write session whose statements run through ``fetch`` are counted (the
    session's own methods, ``deleted_flags``, call it too)."""

    def __init__(self, session: WriteSession) -> None:
        self.session = session
        self.fetches = 0
        real = session.fetch

        async def counted(
            statement: Executable, params: Mapping[str, Any] | None = None
        ) -> Sequence[Any]:
            self.fetches += 1
            return await real(statement, params)

        session.fetch = counted  # type: ignore[method-assign]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.session, name)


def slots(n: int, schedule: str) -> list[dict[str, Any]]:
    return [
        {
            "resourceType": "Slot",
            "schedule": {"reference": schedule},
            "status": "free",
            "start": f"2026-06-12T{8 + i // 60:02d}:{i % 60:02d}:00.000+02:00",
            "end": f"2026-06-12T{8 + i // 60:02d}:{i % 60:02d}:30.000+02:00",
        }
        for i in range(n)
    ]


async def test_one_query_for_a_thousand_slots_of_one_schedule(store: Store) -> None:
    pending = PendingReferences()
    for i, body in enumerate(slots(1000, "Schedule/s1")):
        pending.wrote("Slot", f"slot-{i}", body)
    async with store.writing() as session:
        counting = CountingSession(session)
        with pytest.raises(errors.Incorrect) as refused:
            await pending.verify(counting)  # type: ignore[arg-type]
        assert counting.fetches == 1
        assert len(refused.value.issues) == 1000
        assert refused.value.issues[0].expression == ("Slot.schedule",)


async def test_a_transaction_of_slots_checks_its_references_once(store: Store) -> None:
    ctx = Context(store=store, registry=default_registry(), timezone=PARIS)
    entries = [
        {
            "fullUrl": "urn:uuid:0b1c9f9e-1a2b-4c3d-8e9f-001122334455",
            "resource": {"resourceType": "Schedule", "actor": [{"display": "Dr X"}]},
            "request": {"method": "POST", "url": "Schedule"},
        }
    ] + [
        {"resource": body, "request": {"method": "POST", "url": "Slot"}}
        for body in slots(200, "urn:uuid:0b1c9f9e-1a2b-4c3d-8e9f-001122334455")
    ]
    checked: list[int] = []
    original = PendingReferences.verify

    async def verify(self: PendingReferences, session: WriteSession, where: Any = None) -> None:
        counting = CountingSession(session)
        await original(self, counting, where)  # type: ignore[arg-type]
        checked.append(counting.fetches)

    with pytest.MonkeyPatch.context() as m:
        m.setattr(PendingReferences, "verify", verify)
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
        await transaction.process(ctx, bundle, "http://x", return_resources=False)
    assert checked == [1]


async def test_targets_beyond_a_statement_are_split(store: Store) -> None:
    pending = PendingReferences()
    for i in range(1500):
        pending.wrote("Slot", f"slot-{i}", slots(1, f"Schedule/s{i}")[0])
    async with store.writing() as session:
        counting = CountingSession(session)
        with pytest.raises(errors.Incorrect) as refused:
            await pending.verify(counting)  # type: ignore[arg-type]
        assert counting.fetches == 2 and len(refused.value.issues) == 1500
