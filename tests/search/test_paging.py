"""Keyset paging on SQLite and PostgreSQL: pages in ``_sort`` order, ``next``/``previous``
cursors, no duplicates or gaps while others write, tampered cursors are 400s."""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import pytest

from fhir_server.core.errors import Incorrect
from fhir_server.core.fhirtime import PARIS
from fhir_server.search.indexing.indexer import index_resource
from fhir_server.search.query import cursor as c
from fhir_server.search.query import parse, plan, run
from fhir_server.storage.port import Stored

if TYPE_CHECKING:
    from conftest import Searcher

FAMILIES = ["Dupont", "Martin", "Durand", "Élise", "durand", None]


def person(i: int, rng: random.Random) -> dict[str, Any]:
    body: dict[str, Any] = {"resourceType": "Practitioner", "id": f"p{i:03d}"}
    family = rng.choice(FAMILIES)
    if family is not None:
        body["name"] = [{"family": family, "given": [rng.choice(["Ana", "Luc", "Zoé"])]}]
    if rng.random() < 0.8:
        body["gender"] = rng.choice(["female", "male", "other"])
    return body


def slot(i: int, rng: random.Random) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Slot",
        "id": f"s{i:03d}",
        "status": rng.choice(["free", "busy"]),
        "schedule": {"reference": "Schedule/x"},
    }
    if rng.random() < 0.9:
        body["start"] = f"2024-06-{rng.randint(10, 12)}T{rng.choice(['08', '09'])}:00:00+02:00"
    return body


async def page(
    searcher: Searcher,
    res_type: str,
    query: str,
    cursor: str | None,
    limit: int,
    **options: Any,
) -> c.Page:
    async with searcher.store.reading() as session:
        pairs = parse_qsl(query)
        parsed = parse.parse(searcher.registry, res_type, pairs, default_tz=PARIS)
        parsed = await run.prefetch_chains(session, searcher.registry, parsed)
        return await c.search_page(session, parsed, pairs, cursor=cursor, limit=limit, **options)


async def walk(searcher: Searcher, res_type: str, query: str, limit: int) -> list[c.Page]:
    pages = [await page(searcher, res_type, query, None, limit)]
    while pages[-1].next_cursor is not None:
        pages.append(await page(searcher, res_type, query, pages[-1].next_cursor, limit))
        assert len(pages) < 200
    return pages


async def update(searcher: Searcher, resource: dict[str, Any], *, delete: bool = False) -> None:
    async with searcher.store.writing() as session:
        previous = await session.current(resource["resourceType"], resource["id"])
        assert previous is not None
        searcher.clock += timedelta(seconds=1)
        stored = Stored(
            resource["resourceType"],
            resource["id"],
            previous.version + 1,
            searcher.clock,
            delete,
            json.dumps(resource).encode(),
            "DELETE" if delete else "PUT",
        )
        rows = {} if delete else index_resource(searcher.registry, resource)
        await session.put(stored, rows, previous)


SORTS = [
    ("Practitioner", ""),
    ("Practitioner", "_sort=family"),
    ("Practitioner", "_sort=-family,given"),
    ("Practitioner", "_sort=gender,-_id"),
    ("Practitioner", "_sort=-_lastUpdated"),
    ("Practitioner", "_sort=_id&gender=female,male"),
    ("Slot", "_sort=start,-status"),
    ("Slot", "_sort=-start&status=free"),
    ("Slot", "_sort=-status,start,_id"),
]


@pytest.mark.parametrize(("res_type", "query"), SORTS)
async def test_pages_follow_the_sort_order_both_ways(
    searcher: Searcher, res_type: str, query: str
) -> None:
    rng = random.Random(query)
    make = person if res_type == "Practitioner" else slot
    await searcher.put(*(make(i, rng) for i in range(40)))
    everything = await searcher.ids(res_type, query)  # the same order, in one go
    for limit in (1, 7, 40, 100):
        pages = await walk(searcher, res_type, query, limit)
        assert [i for p in pages for i in p.ids] == everything, limit
        assert all(len(p.ids) == limit for p in pages[:-1])
        assert pages[0].previous_cursor is None
        # and back from the last page: the same pages, in reverse
        back = [pages[-1]]
        while back[-1].previous_cursor is not None:
            back.append(await page(searcher, res_type, query, back[-1].previous_cursor, limit))
        assert [p.ids for p in reversed(back)] == [p.ids for p in pages]


async def test_numbers_sort_and_page(searcher: Searcher) -> None:
    minutes = [15, 20, 20, 0.1 + 0.2, 0.3, None, 45, 20, 1e-7, 1000000]
    await searcher.put(
        *(
            {
                "resourceType": "Appointment",
                "id": f"a{i}",
                "status": "booked",
                "participant": [],
                **({"minutesDuration": m} if m is not None else {}),
            }
            for i, m in enumerate(minutes)
        )
    )
    for query in ("_sort=minutes", "_sort=-minutes"):
        everything = await searcher.ids("Appointment", query)
        assert len(everything) == len(minutes)
        pages = await walk(searcher, "Appointment", query, 3)
        assert [i for p in pages for i in p.ids] == everything


async def test_no_duplicates_or_gaps_while_others_write(searcher: Searcher) -> None:
    rng = random.Random(2024)
    people = [person(i, rng) for i in range(60)]
    await searcher.put(*people)
    step = 0
    dead: set[str] = set()  # modified or deleted by an earlier round
    for query in ("", "_sort=family,given", "_sort=-gender"):
        seen: list[str] = []
        touched: set[str] = set()
        current = await page(searcher, "Practitioner", query, None, 8)
        while True:
            seen += current.ids
            # between two pages: new resources, updates and deletes of resources not seen yet
            step += 1
            fresh = person(1000 + step, rng)
            await searcher.put(fresh)
            touched.add(fresh["id"])
            unseen = [p for p in people if p["id"] not in seen and p["id"] not in touched]
            if unseen:
                changed = rng.choice(unseen)
                changed = {**changed, "name": [{"family": rng.choice(["Aaa", "Zzz"])}]}
                await update(searcher, changed)
                touched.add(changed["id"])
            others = [p for p in unseen if p["id"] not in touched]
            if others:
                gone = rng.choice(others)
                await update(searcher, gone, delete=True)
                touched.add(gone["id"])
            if current.next_cursor is None:
                break
            current = await page(searcher, "Practitioner", query, current.next_cursor, 8)
        counts = Counter(seen)
        untouched = {p["id"] for p in people} - touched - dead
        dead |= {i for i in touched if i.startswith("p0")}
        assert {i for i in untouched if counts[i] != 1} == set(), query
        assert all(n == 1 for n in counts.values()), query  # nothing twice, even the moved


async def test_rows_and_an_empty_limit(searcher: Searcher) -> None:
    rng = random.Random(1)
    await searcher.put(*(person(i, rng) for i in range(5)))
    columns = [plan.R.c.res_type, plan.R.c.version]
    first = await page(searcher, "Practitioner", "", None, 3, columns=columns)
    assert first.rows == [("Practitioner", 1)] * 3 and first.ids == ["p000", "p001", "p002"]
    assert (await page(searcher, "Practitioner", "", None, 0)).ids == []
    R = plan.R  # what the search interaction reads: whole rows, res_id included
    full = [R.c.pk, R.c.res_type, R.c.res_id, R.c.version, R.c.last_updated, R.c.content]
    with pytest.raises(Incorrect):  # the cursor belongs to another order
        await page(searcher, "Practitioner", "_sort=-_id", first.next_cursor, 3, columns=full)
    ordered = await page(searcher, "Practitioner", "_sort=-_id", None, 2, columns=full)
    assert ordered.ids == ["p004", "p003"] == [r[2] for r in ordered.rows]
    assert [json.loads(r[5])["id"] for r in ordered.rows] == ordered.ids
    plain = await page(searcher, "Practitioner", "", None, 3)
    assert plain.rows == []


async def test_bad_cursors_are_400(searcher: Searcher) -> None:
    rng = random.Random(3)
    await searcher.put(*(person(i, rng) for i in range(5)))
    query = "_sort=family&gender=female,male,other"
    first = await page(searcher, "Practitioner", query, None, 2)
    good = first.next_cursor
    assert good is not None
    assert (await page(searcher, "Practitioner", query, good, 2)).ids
    # the cursor does not depend on _count or _include, or on the order of the parameters
    same = "gender=female,male,other&_count=5&_include=Practitioner:x&_sort=family"
    assert (await page(searcher, "Practitioner", same, good, 2)).ids
    head, _, tail = good.partition(".")
    flipped = head[:-1] + ("A" if head[-1] != "A" else "B")
    forged_payload = c._b64(json.dumps(["n", ["dupont", 1]]).encode())
    bad = [
        "",
        "x",
        ".",
        "abc.def",
        f"{flipped}.{tail}",
        f"{head}.{tail[:-2]}",
        f"{forged_payload}.{tail}",
        good + "A" * 5000,
        "é.é",
    ]
    for cursor in bad:
        with pytest.raises(Incorrect) as info:
            await page(searcher, "Practitioner", query, cursor or "!", 2)
        assert info.value.status == 400 and info.value.issues[0].expression == ("_cursor",)
    for other in ("_sort=-family&gender=female,male,other", "_sort=family", "_sort=family,_id"):
        with pytest.raises(Incorrect):
            await page(searcher, "Practitioner", other, good, 2)
    with pytest.raises(Incorrect):
        await page(searcher, "Slot", query.replace("gender", "status"), good, 2)
    signed = await page(searcher, "Practitioner", query, None, 2, secret=b"k1")
    assert signed.next_cursor is not None and signed.next_cursor != good
    assert (await page(searcher, "Practitioner", query, signed.next_cursor, 2, secret=b"k1")).ids
    with pytest.raises(Incorrect):
        await page(searcher, "Practitioner", query, signed.next_cursor, 2, secret=b"k2")


def test_a_well_signed_cursor_with_wrong_values_is_a_400() -> None:
    from fhir_server.search.query import parse
    from fhir_server.search.registry.parameters import default_registry

    pairs = [("_sort", "family,-_lastUpdated")]
    query = parse.parse(default_registry(), "Practitioner", pairs, default_tz=PARIS)
    columns = plan.sort_columns(query)
    bound = c.binding("Practitioner", pairs)
    for values in (
        ["a", "not a date", 3],
        ["a", "2024-01-01T00:00:00", 3],  # no offset
        ["a", "2024-01-01T00:00:00+00:00", "3"],
        ["a", "2024-01-01T00:00:00+00:00", None],  # pk is never missing
        [1, "2024-01-01T00:00:00+00:00", 3],
        ["a", "2024-01-01T00:00:00+00:00"],
        ["a", "2024-01-01T00:00:00+00:00", True],
    ):
        data = json.dumps(["n", values]).encode()
        text = f"{c._b64(data)}.{c._b64(c._mac(c._DEFAULT_SECRET, bound, data))}"
        with pytest.raises(Incorrect):
            c.decode(text, columns, bound, c._DEFAULT_SECRET)
    data = json.dumps(["n", [None, "2024-01-01T00:00:00+00:00", 3]]).encode()
    text = f"{c._b64(data)}.{c._b64(c._mac(c._DEFAULT_SECRET, bound, data))}"
    assert c.decode(text, columns, bound, c._DEFAULT_SECRET).values[0] is None


async def test_pages_by_distance(searcher: Searcher) -> None:
    rng = random.Random(5)
    places = [
        {
            "resourceType": "Location",
            "id": f"l{i:02d}",
            "position": {"latitude": 48.85 + rng.uniform(-0.1, 0.1), "longitude": 2.35},
        }
        for i in range(30)
    ]
    places.append({**places[3], "id": "twin"})  # same place: a tie broken by pk
    await searcher.put(*places)
    query = "near=48.85|2.35|20&_sort=near"
    everything = await searcher.ids("Location", query)
    assert len(everything) == 31
    pages = await walk(searcher, "Location", query, 4)
    assert [i for p in pages for i in p.ids] == everything
    back = [pages[-1]]
    while back[-1].previous_cursor is not None:
        back.append(await page(searcher, "Location", query, back[-1].previous_cursor, 4))
    assert [p.ids for p in reversed(back)] == [p.ids for p in pages]
