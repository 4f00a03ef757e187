"""Search through the API: bundles, includes, revincludes, paging, subsetting, explain."""

from __future__ import annotations

from typing import Any

import pytest
from httpx import AsyncClient

from tests.api.conftest import FHIR, practitioner, slot

pytestmark = pytest.mark.asyncio


async def put(client: AsyncClient, resource: dict[str, Any]) -> None:
    r = await client.put(
        f"/{resource['resourceType']}/{resource['id']}",
        json=resource,
        headers={"Content-Type": FHIR},
    )
    assert r.status_code in (200, 201), r.text


async def agenda(client: AsyncClient, slots: int = 3) -> None:
    await put(client, practitioner(id="p1"))
    await put(
        client,
        {
            "resourceType": "PractitionerRole",
            "id": "r1",
            "practitioner": {"reference": "Practitioner/p1"},
        },
    )
    await put(
        client,
        {
            "resourceType": "Schedule",
            "id": "sc1",
            "actor": [{"reference": "Practitioner/p1"}, {"reference": "PractitionerRole/r1"}],
        },
    )
    await put(
        client,
        {"resourceType": "Schedule", "id": "sc2", "actor": [{"reference": "Practitioner/p1"}]},
    )
    for i in range(slots):
        start = f"2026-06-12T{8 + i:02d}:00:00.000+02:00"
        end = f"2026-06-12T{8 + i:02d}:15:00.000+02:00"
        await put(
            client, slot(id=f"s{i}", start=start, end=end, schedule={"reference": "Schedule/sc1"})
        )


def by_mode(bundle: dict[str, Any], mode: str) -> list[str]:
    return [
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in bundle.get("entry", [])
        if e["search"]["mode"] == mode
    ]


async def test_include_and_iterate(client: AsyncClient) -> None:
    await agenda(client)
    raw = "_include=Slot:schedule&_include:iterate=Schedule:actor&status=free"
    r = await client.get(f"/Slot?{raw}")
    assert r.status_code == 200, r.text
    b = r.json()
    assert b["type"] == "searchset" and b["total"] == 3
    assert sorted(by_mode(b, "match")) == ["Slot/s0", "Slot/s1", "Slot/s2"]
    assert sorted(by_mode(b, "include")) == [
        "Practitioner/p1",
        "PractitionerRole/r1",
        "Schedule/sc1",
    ]
    assert b["link"] == [{"relation": "self", "url": f"http://testserver/Slot?{raw}"}]
    assert all(e["fullUrl"].startswith("http://testserver/") for e in b["entry"])
    # without :iterate the actors are not included
    b = (await client.get("/Slot?_include=Slot:schedule&_include=Schedule:actor")).json()
    assert sorted(by_mode(b, "include")) == ["Schedule/sc1"]
    # target type restriction
    b = (await client.get("/Schedule?_include=Schedule:actor:PractitionerRole")).json()
    assert sorted(by_mode(b, "include")) == ["PractitionerRole/r1"]


async def test_revinclude(client: AsyncClient) -> None:
    await agenda(client)
    b = (await client.get("/Schedule?_revinclude=Slot:schedule&_id=sc1")).json()
    assert by_mode(b, "match") == ["Schedule/sc1"] and b["total"] == 1
    assert sorted(by_mode(b, "include")) == ["Slot/s0", "Slot/s1", "Slot/s2"]


async def test_has_criteria_narrow_the_revinclude(client: AsyncClient) -> None:
    """SOS shape: the revincluded Slots are the free ones of the window, and a Slot whose
    schedule is another server's Schedule/sc1 (absolute URL) is not one of ours."""
    await put(client, practitioner(id="p1"))  # before the Schedule that references it
    await put(
        client,
        {"resourceType": "Schedule", "id": "sc1", "actor": [{"reference": "Practitioner/p1"}]},
    )
    slots = {
        "in-free": ("2026-06-12T10:00:00.000+02:00", "free", "Schedule/sc1"),
        "in-busy": ("2026-06-12T11:00:00.000+02:00", "busy", "Schedule/sc1"),
        "out-free": ("2026-06-20T10:00:00.000+02:00", "free", "Schedule/sc1"),
        "edge-free": ("2026-06-13T09:00:00.000+02:00", "free", "Schedule/sc1"),
        "elsewhere": (
            "2026-06-12T10:00:00.000+02:00",
            "free",
            "https://other.example/fhir/Schedule/sc1",
        ),
    }
    for sid, (start, status, schedule) in slots.items():
        body = slot(start, id=sid, status=status, schedule={"reference": schedule})
        body["end"] = start.replace(":00:00.000", ":15:00.000")
        await put(client, body)
    query = (
        "/Schedule?_revinclude=Slot:schedule&_has:Slot:schedule:status=free"
        "&_has:Slot:schedule:start=ge2026-06-12T08:00:00&_has:Slot:schedule:start=le2026-06-13T09:00:00"
    )
    b = (await client.get(query)).json()
    assert by_mode(b, "match") == ["Schedule/sc1"]
    assert sorted(by_mode(b, "include")) == ["Slot/edge-free", "Slot/in-free"]
    b = (
        await client.get(
            query.replace("start=le2026-06-13T09:00:00", "start=le2026-06-13T08:59:59")
        )
    ).json()
    assert sorted(by_mode(b, "include")) == ["Slot/in-free"]
    plain = (await client.get("/Schedule?_revinclude=Slot:schedule&_id=sc1")).json()
    # without _has, every Slot of sc1 (still not the other server's)
    ours = sorted(f"Slot/{sid}" for sid in slots if sid != "elsewhere")
    assert sorted(by_mode(plain, "include")) == ours
    elsewhere = (await client.get("/Slot?_id=elsewhere&_include=Slot:schedule")).json()
    assert by_mode(elsewhere, "include") == []


async def test_included_resources_do_not_count_against_count(client: AsyncClient) -> None:
    await agenda(client, slots=5)
    b = (await client.get("/Slot?_include=Slot:schedule&_count=2")).json()
    assert len(by_mode(b, "match")) == 2 and by_mode(b, "include") == ["Schedule/sc1"]
    assert b["total"] == 5
    seen = by_mode(b, "match")
    next_url = next(link["url"] for link in b["link"] if link["relation"] == "next")
    while next_url:
        b = (await client.get(next_url)).json()
        seen += by_mode(b, "match")
        next_url = next((link["url"] for link in b["link"] if link["relation"] == "next"), None)
    assert sorted(seen) == [f"Slot/s{i}" for i in range(5)]


async def test_empty_result_has_total_zero_and_self_link(client: AsyncClient) -> None:
    b = (await client.get("/Slot?status=busy")).json()
    assert b["total"] == 0 and "entry" not in b
    assert b["link"] == [{"relation": "self", "url": "http://testserver/Slot?status=busy"}]


async def test_summary_elements_total(client: AsyncClient) -> None:
    await agenda(client)
    count = (await client.get("/Slot?_summary=count")).json()
    assert count["total"] == 3 and "entry" not in count
    b = (await client.get("/Slot?_elements=start&_count=1")).json()
    res = b["entry"][0]["resource"]
    assert set(res) <= {"resourceType", "id", "meta", "start", "end", "status", "schedule"}
    assert "identifier" not in res and any(t["code"] == "SUBSETTED" for t in res["meta"]["tag"])
    summary = (await client.get("/Practitioner?_summary=true")).json()
    assert "SUBSETTED" in str(summary["entry"][0]["resource"]["meta"])
    no_total = (await client.get("/Slot?_total=none")).json()
    assert "total" not in no_total


async def test_unknown_parameters_reported_or_strict(client: AsyncClient) -> None:
    await agenda(client)
    b = (await client.get("/Slot?status=free&colour=blue")).json()
    assert b["total"] == 3
    outcome = [e for e in b["entry"] if e["search"]["mode"] == "outcome"]
    assert "colour" in outcome[0]["resource"]["issue"][0]["diagnostics"]
    strict = await client.get(
        "/Slot?status=free&colour=blue", headers={"Prefer": "handling=strict"}
    )
    assert strict.status_code == 400 and strict.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize(
    "query",
    [
        "_include=Slot",
        "_include=Slot:status",
        "_include=Slot:nothing",
        "_revinclude=Slot:schedule:Patient",
        "start=tomorrow",
        "status:bogus=free",
        "_count=-1",
    ],
)
async def test_bad_search_values(client: AsyncClient, query: str) -> None:
    r = await client.get(f"/Slot?{query}")
    assert r.status_code == 400, r.text
    assert r.json()["resourceType"] == "OperationOutcome"


async def test_post_search_and_explain(client: AsyncClient) -> None:
    await agenda(client)
    r = await client.post(
        "/Slot/_search",
        content="status=free&_count=1",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 200 and r.json()["total"] == 3
    explained = (await client.get("/Slot?status=free&_include=Slot:schedule&_explain=true")).json()
    assert explained["resourceType"] == "OperationOutcome"
    text = " ".join(i["diagnostics"] for i in explained["issue"])
    assert "status" in text and "_include=Slot:schedule" in text


@pytest.mark.usefixtures("sched_1")
async def test_slot_times_rendered_in_paris_form_in_search(client: AsyncClient) -> None:
    await put(client, slot(id="z", start="2026-01-12T09:00:00Z", end="2026-01-12T09:15:00.5+00:00"))
    await put(
        client,
        slot(
            id="summer", start="2026-07-01T08:00:00.000+02:00", end="2026-07-01T08:15:00.000+02:00"
        ),
    )
    b = (await client.get("/Slot?_id=z,summer&_sort=start")).json()
    found = {e["resource"]["id"]: e["resource"] for e in b["entry"]}
    assert found["z"]["start"] == "2026-01-12T10:00:00.000+01:00"
    assert found["z"]["end"] == "2026-01-12T10:15:00.500+01:00"
    assert found["summer"]["start"] == "2026-07-01T08:00:00.000+02:00"
    # a read serves the stored form untouched
    assert (await client.get("/Slot/z")).json()["start"] == "2026-01-12T09:00:00Z"


async def test_keyset_paging_under_concurrent_writes(client: AsyncClient) -> None:
    await agenda(client, slots=6)
    b = (await client.get("/Slot?_count=2&_sort=start")).json()
    seen = by_mode(b, "match")
    next_url = next(link["url"] for link in b["link"] if link["relation"] == "next")
    assert "_cursor=" in next_url and "_offset" not in next_url
    # writes between pages: a new slot before the position, and an update of a seen one
    await put(
        client,
        slot(
            id="early",
            start="2026-06-12T06:00:00.000+02:00",
            end="2026-06-12T06:15:00.000+02:00",
            schedule={"reference": "Schedule/sc1"},
        ),
    )
    await put(
        client,
        slot(
            id="s0",
            start="2026-06-12T08:00:00.000+02:00",
            end="2026-06-12T08:15:00.000+02:00",
            comment="changed",
            schedule={"reference": "Schedule/sc1"},
        ),
    )
    pages = 1
    while next_url:
        b = (await client.get(next_url)).json()
        pages += 1
        seen += by_mode(b, "match")
        links = {link["relation"]: link["url"] for link in b["link"]}
        assert "previous" in links
        next_url = links.get("next")
    assert pages == 3
    assert sorted(seen) == [f"Slot/s{i}" for i in range(6)]  # no duplicate, no gap
    back = (await client.get(links["previous"])).json()
    assert by_mode(back, "match") == ["Slot/s2", "Slot/s3"]


async def test_tampered_cursor_is_a_400(client: AsyncClient) -> None:
    await agenda(client, slots=3)
    b = (await client.get("/Slot?_count=1")).json()
    next_url = next(link["url"] for link in b["link"] if link["relation"] == "next")
    r = await client.get(next_url[:-3] + "AAA")
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"
    other = await client.get(next_url.replace("_count=1", "status=busy&_count=1"))
    assert other.status_code == 400  # a cursor belongs to its query


@pytest.mark.parametrize(
    "query",
    [
        "/Practitioner?name=a%00b",
        "/Practitioner?identifier=urn:x%7Ca%01b",
        "/Practitioner?_id=%1f",
        "/Practitioner?na%00me=x",
    ],
)
async def test_control_characters_in_a_query_are_a_400(client: AsyncClient, query: str) -> None:
    """R4 strings hold no control character, and PostgreSQL text no NUL (a 500 before)."""
    r = await client.get(query)
    assert r.status_code == 400, r.text
    assert r.json()["issue"][0]["code"] == "value"
    r = await client.put(query, json=practitioner())
    assert r.status_code == 400, r.text  # the conditional update's search is parsed the same way
