"""Forward chains are resolved to the resources they reach before the main statement
(``run.prefetch_chains``), with the same answers as the nested subqueries."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from fhir_server.core.fhirtime import PARIS
from fhir_server.search.query import parse, run
from fhir_server.search.registry.parameters import default_registry

if TYPE_CHECKING:
    from conftest import Searcher

RPPS = "urn:oid:1.2.250.1.71.4.2.1"


def data() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for n in range(4):
        out.append(
            {
                "resourceType": "Practitioner",
                "id": f"p{n}",
                "identifier": [{"system": RPPS, "value": f"81000000000{n}"}],
            }
        )
        out.append(
            {
                "resourceType": "Schedule",
                "id": f"s{n}",
                "actor": [{"reference": f"Practitioner/p{n}"}],
            }
        )
        for h in range(3):
            out.append(
                {
                    "resourceType": "Slot",
                    "id": f"slot{n}{h}",
                    "schedule": {"reference": f"Schedule/s{n}"},
                    "status": "free" if h else "busy",
                    "start": f"2026-06-12T{10 + h}:00:00.000+02:00",
                    "end": f"2026-06-12T{10 + h}:15:00.000+02:00",
                }
            )
    return out


QUERIES = [
    f"schedule.actor:Practitioner.identifier={RPPS}|810000000001,{RPPS}|810000000003"
    "&start=ge2026-06-12T10:30:00&status=free",
    f"schedule.actor:Practitioner.identifier={RPPS}|819999999999",  # reaches nothing
    "schedule.actor:Practitioner.identifier=810000000002&schedule.actor.name:missing=true",
    "schedule.actor:Practitioner._id=p0,p2&start=le2026-06-12T11:00:00",
]
EXPECTED = [
    ["slot11", "slot12", "slot31", "slot32"],
    [],
    ["slot20", "slot21", "slot22"],
    ["slot00", "slot01", "slot20", "slot21"],
]


async def test_prefetched_chains_answer_like_subqueries(
    searcher: Searcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    searcher.registry = default_registry()
    await searcher.put(*data())
    prefetched = [sorted(await searcher.ids("Slot", q)) for q in QUERIES]
    assert prefetched == EXPECTED
    monkeypatch.setattr(run, "MAX_PREFETCH", 0)  # every chain stays a subquery
    assert [sorted(await searcher.ids("Slot", q)) for q in QUERIES] == EXPECTED
    assert await searcher.count("Slot", QUERIES[0]) == 4


async def test_prefetch_turns_a_chain_into_references(searcher: Searcher) -> None:
    searcher.registry = default_registry()
    await searcher.put(*data())
    query = parse.parse(
        searcher.registry,
        "Slot",
        [("schedule.actor:Practitioner.identifier", f"{RPPS}|810000000001,{RPPS}|810000000003")],
        default_tz=PARIS,
    )
    async with searcher.store.reading() as session:
        resolved = await run.prefetch_chains(session, searcher.registry, query)
        (criterion,) = resolved.criteria
        assert criterion.path == () and criterion.param.code == "schedule"
        assert criterion.values == (
            parse.ReferenceValue("Schedule", "s1"),
            parse.ReferenceValue("Schedule", "s3"),
        )
        again = await run.prefetch_chains(session, searcher.registry, resolved)
    assert again is resolved  # nothing left to resolve
