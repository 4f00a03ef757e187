"""Chained parameters, ``_has`` and the SAS queries that use them, on SQLite and PostgreSQL
(https://hl7.org/fhir/R4/search.html#chaining, #has)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pytest

from fhir_server.core.errors import Incorrect
from fhir_server.core.fhirtime import PARIS
from fhir_server.search.query import parse, plan
from fhir_server.search.registry.parameters import default_registry

if TYPE_CHECKING:
    from conftest import Searcher

RPPS = "urn:oid:1.2.250.1.71.4.2.1"
IDNST = "urn:oid:1.2.250.1.71.4.2.2"
SIRET_1, SIRET_2, SIRET_3 = "334173748400020", "340426662900033", "399999999900099"


def ref(target: str) -> dict[str, str]:
    return {"reference": target}


def organization(oid: str, siret: str) -> dict[str, Any]:
    return {
        "resourceType": "Organization",
        "id": oid,
        "identifier": [{"system": IDNST, "value": siret}],
    }


def location(lid: str, org: str, name: str) -> dict[str, Any]:
    return {
        "resourceType": "Location",
        "id": lid,
        "name": name,
        "managingOrganization": ref(f"Organization/{org}"),
    }


def practitioner(pid: str, rpps: str | None, family: str) -> dict[str, Any]:
    body: dict[str, Any] = {"resourceType": "Practitioner", "id": pid, "name": [{"family": family}]}
    if rpps:
        body["identifier"] = [{"system": RPPS, "value": rpps}]
    return body


def schedule(sid: str, *actors: str) -> dict[str, Any]:
    return {"resourceType": "Schedule", "id": sid, "actor": [ref(a) for a in actors]}


def slot(sid: str, sched: str, start: str, status: str = "free") -> dict[str, Any]:
    return {
        "resourceType": "Slot",
        "id": sid,
        "schedule": ref(sched),
        "status": status,
        "start": start,
        "end": start.replace(":00:00", ":15:00"),
    }


DAY = "2023-08-18"
DATA = [
    organization("o1", SIRET_1),
    organization("o2", SIRET_2),
    organization("o3", SIRET_3),
    location("l1", "o1", "SOS Médecins Bordeaux"),
    location("l2", "o2", "SOS Médecins Montpellier"),
    location("l3", "o3", "Autre"),
    practitioner("p1", "810101288385", "Dupont"),
    practitioner("p2", "800001288385", "Martin"),
    practitioner("p3", "810106738385", "Durand"),
    practitioner("p4", "899999999999", "Dupond"),
    {"resourceType": "PractitionerRole", "id": "pr1", "practitioner": ref("Practitioner/p1")},
    schedule("sch1", "Practitioner/p1", "PractitionerRole/pr1"),
    schedule("sch2", "Practitioner/p2"),
    schedule("sch3", "Practitioner/p4"),
    schedule("sch4", "Practitioner/p1", "Practitioner/p2"),
    schedule("sos1", "Location/l1"),
    schedule("sos2", "Location/l2"),
    schedule("sos3", "Location/l3"),
    slot("a1", "Schedule/sch1", f"{DAY}T10:00:00+02:00"),
    slot("a2", "Schedule/sch1", f"{DAY}T11:00:00+02:00", "busy"),
    slot("a3", "Schedule/sch2", f"{DAY}T12:00:00+02:00"),
    slot("a4", "Schedule/sch3", f"{DAY}T10:00:00+02:00"),
    slot("a5", "Schedule/sch1", "2023-08-25T10:00:00+02:00"),
    slot("a6", "https://other.example/fhir/Schedule/sch2", f"{DAY}T10:00:00+02:00"),
    slot("a7", "Schedule/sch4", f"{DAY}T09:00:00+02:00"),
    # SOS: l1 has a free slot in the window; l2 a free one before it and a busy one in it
    # (matches only if the _has terms were independent); l3 is not asked for.
    slot("b1", "Schedule/sos1", f"{DAY}T14:00:00+02:00"),
    slot("b2", "Schedule/sos2", "2023-08-10T14:00:00+02:00"),
    slot("b3", "Schedule/sos2", f"{DAY}T15:00:00+02:00", "busy"),
    slot("b4", "Schedule/sos3", f"{DAY}T14:00:00+02:00"),
]

INT_R01 = (
    "_include=Slot:schedule&_include:iterate=Schedule:actor"
    "&start=ge2023-08-18T10:00:00&start=le2023-08-20T10:00:00"
    f"&schedule.actor:Practitioner.identifier={RPPS}|810101288385, {RPPS}|800001288385,"
    f"{RPPS}|810106738385&status=free"
)
SOS = (
    "_revinclude=Slot:schedule&_include=Schedule:actor:Location"
    "&_include:iterate=Location:organization"
    "&_has:Slot:schedule:start=ge2023-08-18T10:00:00%2B02:00"
    "&_has:Slot:schedule:start=le2023-08-20T09:00:00%2B02:00"
    "&_has:Slot:schedule:status=free"
    f"&actor:Location.organization.identifier={IDNST}|{SIRET_1},{IDNST}|{SIRET_2}"
)


async def test_the_sas_practitioner_query(searcher: Searcher) -> None:
    await searcher.put(*DATA)
    assert set(await searcher.ids("Slot", INT_R01)) == {"a1", "a3"}
    encoded = INT_R01.replace("|", "%7C").replace(", ", ",%20").replace(":", "%3A")
    assert set(await searcher.ids("Slot", encoded)) == {"a1", "a3"}
    swapped = "&".join(reversed(INT_R01.split("&")))
    assert set(await searcher.ids("Slot", swapped)) == {"a1", "a3"}
    assert await searcher.count("Slot", INT_R01) == 2


async def test_the_sas_sos_query_needs_one_slot_for_all_has_terms(searcher: Searcher) -> None:
    await searcher.put(*DATA)
    assert set(await searcher.ids("Schedule", SOS)) == {"sos1"}
    # Each term alone: sos2 has a free Slot, and a Slot in the window, but not the same one.
    await searcher.check(
        "Schedule",
        [
            (
                "_has:Slot:schedule:status=free",
                {"sch1", "sch2", "sch3", "sch4", "sos1", "sos2", "sos3"},
            ),
            ("_has:Slot:schedule:start=ge2023-08-18T15:00:00%2B02:00", {"sch1", "sos2"}),
            (
                "_has:Slot:schedule:start=ge2023-08-18T15:00:00%2B02:00"
                "&_has:Slot:schedule:start=le2023-08-19",
                {"sos2"},
            ),
            (
                "_has:Slot:schedule:start=ge2023-08-18T15:00:00%2B02:00"
                "&_has:Slot:schedule:start=le2023-08-19&_has:Slot:schedule:status=free",
                set(),
            ),
            ("_has:Slot:schedule:status=busy&_has:Slot:schedule:status=free", set()),
            ("_has:Slot:schedule:status=busy,free&_has:Slot:schedule:start=2023-08-25", {"sch1"}),
            ("_has:Slot:schedule:status:not=free", {"sch1", "sos2"}),
        ],
    )


async def test_forward_chains_of_any_depth(searcher: Searcher) -> None:
    await searcher.put(*DATA)
    await searcher.check(
        "Slot",
        [
            (
                f"schedule.actor:Practitioner.identifier={RPPS}|810101288385",
                {"a1", "a2", "a5", "a7"},
            ),
            (f"schedule.actor:Practitioner.identifier={RPPS}|899999999999", {"a4"}),
            ("schedule.actor:Practitioner.identifier=810106738385", set()),
            ("schedule.actor.name=dupon", {"a1", "a2", "a4", "a5", "a7"}),  # no :Type
            ("schedule.actor:Practitioner.family:exact=Dupond", {"a4"}),
            ("schedule.actor.name=SOS", {"b1", "b2", "b3"}),  # Location names too
            (f"schedule.actor:Location.organization.identifier={IDNST}|{SIRET_1}", {"b1"}),
            (f"schedule.actor.organization.identifier={SIRET_3}", {"b4"}),
            ("schedule.actor:PractitionerRole.practitioner.family=dupont", {"a1", "a2", "a5"}),
            ("schedule.actor:PractitionerRole.practitioner=Practitioner/p1", {"a1", "a2", "a5"}),
            ("schedule._id=sch2", {"a3"}),  # a6 points elsewhere (an absolute URL)
            ("schedule=sch2", {"a3"}),
            ("schedule.actor:Practitioner.family=nobody", set()),
            # chains are independent: sch4 has a Dupont and a Martin (two actors)
            (
                "schedule.actor:Practitioner.family=dupont&schedule.actor:Practitioner.family=martin",
                {"a7"},
            ),
            ("schedule.actor:Practitioner.identifier:missing=true", set()),
            (
                "schedule.actor:Practitioner._lastUpdated=gt2000-01-01",
                {"a1", "a2", "a3", "a4", "a5", "a7"},
            ),
        ],
    )
    await searcher.check(
        "Schedule",
        [
            (
                f"actor:Location.organization.identifier={IDNST}|{SIRET_1},{IDNST}|{SIRET_2}",
                {"sos1", "sos2"},
            ),
            ("actor:Practitioner.name=dupon&actor:PractitionerRole._id=pr1", {"sch1"}),
        ],
    )


async def test_chains_do_not_follow_deleted_resources(searcher: Searcher) -> None:
    await searcher.put(*DATA, slot("a8", "Schedule/gone", f"{DAY}T10:00:00+02:00"))
    await searcher.put(schedule("gone", "Practitioner/p2"), deleted=True)
    await searcher.check("Slot", [("schedule._id=gone", set()), ("schedule=gone", {"a8"})])


async def test_nested_and_mixed_has(searcher: Searcher) -> None:
    await searcher.put(*DATA)
    await searcher.check(
        "Practitioner",
        [
            ("_has:Schedule:actor:_has:Slot:schedule:status=busy", {"p1"}),
            ("_has:Schedule:actor:_has:Slot:schedule:start=2023-08-25", {"p1"}),
            ("_has:Schedule:actor:identifier=x", set()),
            ("_has:PractitionerRole:practitioner:_id=pr1", {"p1"}),
            # the same prefix all along: one Schedule, and one Slot of it, for both terms
            (
                "_has:Schedule:actor:_has:Slot:schedule:status=busy"
                "&_has:Schedule:actor:_has:Slot:schedule:start=2023-08-25",
                set(),
            ),
            (
                "_has:Schedule:actor:_has:Slot:schedule:status=busy"
                "&_has:Schedule:actor:_has:Slot:schedule:start=2023-08-18T11:00:00%2B02:00",
                {"p1"},
            ),
            (
                "_has:Schedule:actor:_has:Slot:schedule:start=ge2023-08-18T09:00:00%2B02:00",
                {"p1", "p2", "p4"},
            ),
        ],
    )
    await searcher.check(
        "Organization",
        [
            (
                "_has:Location:organization:_has:Schedule:actor:_has:Slot:schedule:status=busy",
                {"o2"},
            ),
            ("_has:Location:organization:name=SOS", {"o1", "o2"}),
        ],
    )
    await searcher.check(
        "Slot",
        [
            ("schedule._has:Slot:schedule:status=busy", {"a1", "a2", "a5", "b2", "b3"}),
            (
                "schedule.actor:Practitioner._has:PractitionerRole:practitioner:_id=pr1",
                {"a1", "a2", "a5", "a7"},
            ),
        ],
    )


@pytest.mark.parametrize(
    ("res_type", "name", "why"),
    [
        ("Slot", "status.code", "not a reference"),
        ("Slot", "start.x", "not a reference"),
        ("Slot", "nope.name", "unknown parameter 'nope'"),
        ("Slot", "schedule.nope", "unknown parameter 'nope' on Schedule"),
        ("Slot", "schedule.start", "unknown parameter 'start'"),
        ("Slot", "schedule:Practitioner.name", "cannot point to Practitioner"),
        ("Slot", "schedule.actor:Nope.name", "cannot point to Nope"),
        ("Slot", "schedule:missing.actor", "only a resource type"),
        ("Slot", "schedule.", "unknown parameter ''"),
        ("Slot", "schedule.actor.family.name", "not a reference"),
        ("Schedule", "_has:Slot:status:code", "not a reference"),
        ("Schedule", "_has:Slot:schedule", "expected _has:Type:reference:parameter"),
        ("Schedule", "_has:Slot:schedule:", "expected _has"),
        ("Schedule", "_has:Nope:x:y", "unknown resource type 'Nope'"),
        ("Schedule", "_has:Slot:nope:status", "unknown parameter 'nope' on Slot"),
        ("Practitioner", "_has:Slot:schedule:status", "never points to Practitioner"),
        ("Schedule", "_has:Slot:schedule:nope", "unknown parameter 'nope' on Slot"),
        ("Slot", "schedule._count", "unknown parameter '_count'"),
        ("Slot", "schedule.actor:Practitioner.family:nope", "unknown modifier"),
    ],
)
def test_bad_chains_are_400_naming_the_parameter(res_type: str, name: str, why: str) -> None:
    with pytest.raises(Incorrect) as info:
        parse.parse(default_registry(), res_type, [(name, "x")], default_tz=PARIS)
    issue = info.value.issues[0]
    assert info.value.status == 400 and issue.expression == (name,)
    assert name in issue.diagnostics and why in issue.diagnostics, issue.diagnostics


def test_too_deep_chains_are_refused() -> None:
    name = "schedule." + "_has:Slot:schedule:schedule." * 3 + "actor.name"
    with pytest.raises(Incorrect) as info:
        parse.parse(default_registry(), "Slot", [(name, "x")], default_tz=PARIS)
    assert info.value.issues[0].code == "too-costly"


def test_bad_values_in_chains_name_the_chained_parameter() -> None:
    with pytest.raises(Incorrect) as info:
        parse.parse(default_registry(), "Slot", [("schedule.date", "xx")], default_tz=PARIS)
    assert info.value.issues[0].expression == ("schedule.date",)


def test_chains_resolve_targets() -> None:
    query = parse.parse(
        default_registry(),
        "Slot",
        [("schedule.actor.name", "x"), ("schedule.actor:Location.near", "45|5|3|km")],
        default_tz=PARIS,
    )
    untyped, typed = query.criteria
    assert [(link.code, link.sources, link.targets) for link in untyped.path] == [
        ("schedule", ("Slot",), ("Schedule",)),
        ("actor", ("Schedule",), ("HealthcareService", "Location", "Practitioner")),
    ]
    assert untyped.res_types == ("HealthcareService", "Location", "Practitioner")
    assert typed.values == (parse.NearValue(45.0, 5.0, 3.0),)


def test_explain_shows_chains_and_has_groups() -> None:
    registry = default_registry()
    slot_query = parse.parse(
        registry, "Slot", [(k, v) for k, v in _pairs(INT_R01)], default_tz=PARIS
    )
    lines = plan.explain(slot_query).splitlines()
    chain = next(line for line in lines if "schedule.actor" in line)
    assert chain.startswith(
        f"Slot.schedule.actor:Practitioner.identifier={RPPS}|810101288385, {RPPS}|800001288385,"
    )
    # The chain and both start criteria are one range scan of idx_ref_date (composites).
    # (the RPPS numbers: one index probe each; at run time the chain is resolved first)
    probes = " | ".join(
        f"system = '{RPPS}' AND code = '{n}'"
        for n in ("810101288385", "800001288385", "810106738385")
    )
    assert (
        " -> idx_ref_date(param=schedule+start, schedule -> Schedule where (actor -> Practitioner"
        f" where (idx_token(param=identifier, one probe per value: {probes}))) AND start: "
    ) in chain
    assert "AND low > 2023-08-18T07:59:59Z AND start: " in chain
    assert chain.endswith("AND low < 2023-08-20T08:00:01Z)")
    fused = [line for line in lines if line.startswith("Slot.start=")]
    assert fused == [
        "Slot.start=ge2023-08-18T10:00:00 -> (in the schedule+start scan above)",
        "Slot.start=le2023-08-20T10:00:00 -> (in the schedule+start scan above)",
    ]
    sos = parse.parse(registry, "Schedule", _pairs(SOS), default_tz=PARIS)
    lines = plan.explain(sos).splitlines()
    assert len(lines) == 3
    assert lines[0].startswith(
        "Schedule._has:Slot:schedule:start=ge2023-08-18T10:00:00+02:00"
        " & _has:Slot:schedule:start=le2023-08-20T09:00:00+02:00"
        " & _has:Slot:schedule:status=free -> some Slot with schedule -> here and (start: ("
    )
    assert "(idx_ref_date schedule+start)" in lines[0]
    assert lines[0].endswith("AND idx_token(param=status, code = 'free'))")
    assert lines[1].startswith(
        "Schedule.actor:Location.organization.identifier=urn:oid:1.2.250.1.71.4.2.2|"
    )
    assert lines[2] == "Schedule: not deleted, order by pk (creation order)"


def _pairs(query: str) -> list[tuple[str, str]]:
    from urllib.parse import parse_qsl

    return parse_qsl(query.replace("+", quote("+")), keep_blank_values=True)
