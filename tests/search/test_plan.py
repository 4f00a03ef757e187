"""Search plans against real stores (SQLite and PostgreSQL): what each type, modifier and
prefix matches (https://hl7.org/fhir/R4/search.html)."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest

from fhir_server.core.errors import Incorrect
from fhir_server.core.fhirtime import PARIS, parse_range
from fhir_server.search.query import geo, parse, plan

if TYPE_CHECKING:
    from conftest import Searcher

RPPS = "urn:oid:1.2.250.1.71.4.2.1"
V2_0203 = "http://interopsante.org/fhir/CodeSystem/fr-v2-0203"
SAS_PROFILE = "http://sas.fr/fhir/StructureDefinition/FrPractitionerSAS"
UCUM = "http://unitsofmeasure.org"


def practitioner(pid: str, family: str, given: list[str], **extra: Any) -> dict[str, Any]:
    name = {"family": family, "given": given, **extra.pop("name", {})}
    return {"resourceType": "Practitioner", "id": pid, "name": [name], **extra}


PRACTITIONERS = [
    practitioner(
        "p1",
        "Dupont",
        ["Hélène"],
        identifier=[
            {
                "type": {"coding": [{"system": V2_0203, "code": "RPPS"}]},
                "system": RPPS,
                "value": "810101288385",
            }
        ],
        active=True,
        gender="female",
        telecom=[{"system": "email", "value": "Helene.Dupont@example.fr"}],
        communication=[
            {"coding": [{"system": "urn:ietf:bcp:47", "code": "fr", "display": "Français"}]}
        ],
        meta={"profile": [SAS_PROFILE], "tag": [{"system": "http://x/tags", "code": "demo"}]},
    ),
    practitioner(
        "p2",
        "Martin",
        ["Helene"],
        identifier=[{"value": "no-system-1"}, {"system": RPPS, "value": "810000000002"}],
        active=False,
        gender="female",
    ),
    practitioner(
        "p3",
        "O'Neil",
        ["Jean-Pierre"],
        name={"text": "100% sure"},
        identifier=[{"system": "urn:x", "value": "810101288385"}],
        gender="male",
    ),
    practitioner("p4", "100abc", ["axb"]),
]


async def test_token(searcher: Searcher) -> None:
    await searcher.put(*PRACTITIONERS)
    await searcher.check(
        "Practitioner",
        [
            (f"identifier={RPPS}|810101288385", {"p1"}),
            ("identifier=810101288385", {"p1", "p3"}),
            ("identifier=urn:x|", {"p3"}),
            (f"identifier={RPPS}|", {"p1", "p2"}),
            ("identifier=|no-system-1", {"p2"}),
            ("identifier=|810101288385", set()),
            (f"identifier={RPPS}|810101288385,urn:x|810101288385", {"p1", "p3"}),
            (f"identifier={RPPS}|810101288385,%20%20urn:x|810101288385", {"p1", "p3"}),
            (f"identifier:of-type={V2_0203}|RPPS|810101288385", {"p1"}),
            (f"identifier:of-type={V2_0203}|ADELI|810101288385", set()),
            ("active=true", {"p1"}),
            ("active=false", {"p2"}),
            ("active:not=true", {"p2", "p3", "p4"}),
            ("gender=female&active=true", {"p1"}),
            ("gender:not=female,male", {"p4"}),
            ("email=Helene.Dupont@example.fr", {"p1"}),
            ("email=helene.dupont@example.fr", set()),
            ("communication=urn:ietf:bcp:47|fr", {"p1"}),
            ("communication:text=FRAN", {"p1"}),
            ("_id=p1,p2", {"p1", "p2"}),
            ("_id:not=p1", {"p2", "p3", "p4"}),
            ("_tag=http://x/tags|demo", {"p1"}),
            ("identifier:missing=true", {"p4"}),
            ("identifier:missing=false", {"p1", "p2", "p3"}),
        ],
    )


async def test_string_is_accent_and_case_insensitive_prefix(searcher: Searcher) -> None:
    await searcher.put(*PRACTITIONERS)
    await searcher.put(practitioner("gone", "Dupont", ["Hélène"]), deleted=True)
    await searcher.check(
        "Practitioner",
        [
            ("name=Helene", {"p1", "p2"}),
            ("name=HÉLÈNE", {"p1", "p2"}),
            ("given=hél", {"p1", "p2"}),
            ("family=dup", {"p1"}),
            ("family=upont", set()),
            ("family:contains=upon", {"p1"}),
            ("family:exact=Dupont", {"p1"}),
            ("family:exact=dupont", set()),
            ("given:exact=Helene", {"p2"}),
            ("given:exact=Hélène", {"p1"}),
            ("name:contains=ean-pi", {"p3"}),
            ("family=o'neil", {"p3"}),
            ("name=100%25", {"p3"}),  # % is not a wildcard
            ("given=a_b", set()),  # _ is not a wildcard
            ("given=axb", {"p4"}),
            ("family=", {"p1", "p2", "p3", "p4"}),  # an empty parameter is ignored
            ("family=martin,dupont", {"p1", "p2"}),
            ("family=martin&given=hélène", {"p2"}),
            ("_id=gone", set()),
        ],
    )


async def test_uri(searcher: Searcher) -> None:
    await searcher.put(*PRACTITIONERS)
    await searcher.check(
        "Practitioner",
        [
            (f"_profile={SAS_PROFILE}", {"p1"}),
            ("_profile=http://sas.fr/fhir", set()),
            ("_profile:below=http://sas.fr/fhir/", {"p1"}),
            ("_profile:below=HTTP://SAS.FR/", set()),
            (f"_profile:above={SAS_PROFILE}/more", {"p1"}),
            ("_profile:missing=true", {"p2", "p3", "p4"}),
        ],
    )


def slot(
    sid: str, start: str | None, status: str = "free", schedule: str = "sch1"
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Slot",
        "id": sid,
        "status": status,
        "schedule": {"reference": f"Schedule/{schedule}"},
    }
    if start:
        body["start"] = start
    return body


SLOTS = [
    slot("s1", "2024-06-12T16:20:00.000+02:00"),
    slot("s2", "2024-06-12T16:19:00.000+02:00", "busy", "sch2"),
    slot("s3", "2024-06-15T16:20:00.000+02:00"),
    slot("s4", "2024-06-15T16:20:00.001+02:00", schedule="sch2"),
    # 31 March 2024: Paris skips 02:00-03:00, the day is 23 hours long
    slot("s5", "2024-03-31T03:30:00+02:00"),
    slot("s6", "2024-03-31T23:30:00+02:00"),
    slot("s7", "2024-04-01T00:30:00+02:00"),  # 31 March in UTC, not in Paris
    slot("s8", "2024-03-31T00:30:00+01:00"),  # 30 March in UTC, 31 in Paris
    # 27 October 2024: 02:00-03:00 happens twice, the day is 25 hours long
    slot("s9", "2024-10-27T02:30:00+02:00"),
    slot("s10", "2024-10-27T02:30:00+01:00"),
    slot("s11", "2024-10-27T23:30:00+01:00"),
    slot("s12", "2024-10-28T00:00:00+01:00"),
    slot("s13", None),
]
ALL_SLOTS = {s["id"] for s in SLOTS}


async def test_date_prefixes_and_paris_time(searcher: Searcher) -> None:
    await searcher.put(*SLOTS)
    dated = ALL_SLOTS - {"s13"}
    await searcher.check(
        "Slot",
        [
            # the SAS query, offset sent encoded, raw (a "+" decoded as a space), or absent
            (
                "start=ge2024-06-12T16:20:00.000%2B02:00&start=le2024-06-15T16:20:00.000%2B02:00",
                {"s1", "s3"},
            ),
            (
                "start=ge2024-06-12T16:20:00.000+02:00&start=le2024-06-15T16:20:00.000+02:00",
                {"s1", "s3"},
            ),
            ("start=ge2024-06-12T16:20:00.000&start=le2024-06-15T16:20:00.000", {"s1", "s3"}),
            ("start=ge2024-06-12T14:20:00Z&start=le2024-06-15T14:20:00Z", {"s1", "s3", "s4"}),
            ("start=ge2024-06-12T16:20&start=le2024-06-15T16:20&status=free", {"s1", "s3", "s4"}),
            ("start=2024-06-12", {"s1", "s2"}),
            ("start=2024-03-31", {"s5", "s6", "s8"}),
            ("start=2024-03-31T00:00:00Z", set()),
            ("start=ge2024-03-31T00:00:00Z&start=lt2024-04-01T00:00:00Z", {"s5", "s6", "s7"}),
            ("start=2024-03-31T02:30", {"s5"}),  # in the gap: read as 03:30 summer time
            ("start=lt2024-03-31T02:30", {"s8"}),
            ("start=2024-10-27", {"s9", "s10", "s11"}),
            ("start=gt2024-10-27T02:30", {"s10", "s11", "s12"}),  # the first 02:30
            ("start=gt2024-10-27T02:30%2B01:00", {"s11", "s12"}),
            ("start=sa2024-10-27", {"s12"}),
            ("start=eb2024-06-12", {"s5", "s6", "s7", "s8"}),
            ("start=ne2024-06-12", dated - {"s1", "s2"}),
            ("start=2024-03-31,2024-10-27", {"s5", "s6", "s8", "s9", "s10", "s11"}),
            ("start=2024-03-31, 2024-10-27", {"s5", "s6", "s8", "s9", "s10", "s11"}),
            ("start=2024", dated),
            ("start=2024-06", {"s1", "s2", "s3", "s4"}),
            ("start:missing=true", {"s13"}),
            ("start:missing=false", dated),
        ],
    )


async def test_date_approximately(searcher: Searcher) -> None:
    await searcher.put(*SLOTS)
    near = datetime(2024, 6, 1, tzinfo=UTC)  # 11 days before: +-1.1 day
    far = datetime(2023, 6, 12, tzinfo=UTC)  # a year before: +-36.5 days
    assert set(await searcher.ids("Slot", "start=ap2024-06-12T16:20", now=near)) == {"s1", "s2"}
    assert set(await searcher.ids("Slot", "start=ap2024-06-12T16:20", now=far)) == {
        "s1",
        "s2",
        "s3",
        "s4",
    }


def schedule(sid: str, start: str | None, end: str | None) -> dict[str, Any]:
    horizon = {k: v for k, v in (("start", start), ("end", end)) if v}
    body: dict[str, Any] = {"resourceType": "Schedule", "id": sid, "actor": []}
    if horizon:
        body["planningHorizon"] = horizon
    return body


async def test_date_ranges_with_open_ends(searcher: Searcher) -> None:
    await searcher.put(
        schedule("sch1", "2024-06-01", "2024-06-30"),
        schedule("sch2", "2024-06-10", None),
        schedule("sch3", None, "2024-06-20"),
        schedule("sch4", None, None),
    )
    await searcher.check(
        "Schedule",
        [
            ("date=2024-06", {"sch1"}),
            ("date=gt2024-06-30", {"sch2"}),
            ("date=lt2024-06-01", {"sch3"}),
            ("date=ge2024-06-15", {"sch1", "sch2", "sch3"}),
            ("date=le2024-06-05", {"sch1", "sch3"}),
            ("date=sa2024-06-05", {"sch2"}),
            ("date=eb2024-06-25", {"sch3"}),
            ("date=ne2024-06", {"sch2", "sch3"}),
            ("date:missing=true", {"sch4"}),
        ],
    )


def _expected(
    prefix: str, low: datetime, high: datetime, t: tuple[Any, Any], now: datetime
) -> bool:
    """The R4 prefix definitions, written independently of the SQL (None = open end)."""
    t_low, t_high = t
    below = t_low is None or t_low < low  # the target reaches below the search range
    above = t_high is None or t_high > high  # ... or above it
    inside = not below and not above
    if prefix == "ap":
        wide_low, wide_high = plan.approximate_range(low, high, now)
        return (t_low is None or t_low < wide_high) and (t_high is None or t_high > wide_low)
    return {
        "eq": inside,
        "ne": not inside,
        "gt": above,
        "lt": below,
        "ge": above or inside,
        "le": below or inside,
        "sa": t_low is not None and t_low >= high,
        "eb": t_high is not None and t_high <= low,
    }[prefix]


async def test_date_prefixes_match_the_spec_on_random_ranges(searcher: Searcher) -> None:
    rng = random.Random(20240612)
    now = datetime(2024, 6, 1, tzinfo=UTC)

    def moment(zones: tuple[str, ...] = ("Z", "+02:00", "-05:00")) -> str:
        day, hour, minute = rng.randint(1, 30), rng.randint(0, 23), rng.choice([0, 30, 59])
        text = f"2024-06-{day:02d}"
        if rng.random() < 0.3:
            return text
        return f"{text}T{hour:02d}:{minute:02d}:{rng.choice(['00', '00.000'])}{rng.choice(zones)}"

    targets: dict[str, tuple[Any, Any]] = {}
    resources = []
    for i in range(40):
        start = moment() if rng.random() < 0.85 else None
        end = moment() if rng.random() < 0.85 else None
        if start and end and parse_range(start)[0] > parse_range(end)[1]:
            start, end = end, start
        if not start and not end:
            continue
        sid = f"r{i}"
        resources.append(schedule(sid, start, end))
        targets[sid] = (
            parse_range(start)[0] if start else None,
            parse_range(end)[1] if end else None,
        )
    await searcher.put(*resources)
    wrong = []
    for _ in range(60):
        prefix = rng.choice(parse.PREFIXES)
        value = moment(("", "Z", "+02:00", "-05:00")).replace("+", "%2B")
        low, high = parse_range(value.replace("%2B", "+"), PARIS)
        expected = {sid for sid, t in targets.items() if _expected(prefix, low, high, t, now)}
        got = set(await searcher.ids("Schedule", f"date={prefix}{value}", now=now))
        if got != expected:
            wrong.append(f"date={prefix}{value}: extra {got - expected}, missing {expected - got}")
    assert not wrong, "\n".join(wrong)


async def test_last_updated(searcher: Searcher) -> None:
    await searcher.put(*PRACTITIONERS)  # written at 08:00:01 ... 08:00:04 UTC
    await searcher.check(
        "Practitioner",
        [
            ("_lastUpdated=gt2024-06-01T08:00:02Z", {"p3", "p4"}),
            ("_lastUpdated=2024-06-01T10:00:02", {"p2"}),  # Paris time
            ("_lastUpdated=le2024-06-01T08:00:02Z", {"p1", "p2"}),
            ("_lastUpdated=sa2024-06-01T08:00:02Z", {"p3", "p4"}),
            ("_lastUpdated=eb2024-06-01T08:00:02Z", {"p1"}),
            ("_lastUpdated=ne2024-06-01T08:00:02Z", {"p1", "p3", "p4"}),
            ("_lastUpdated=2024-06-01", {"p1", "p2", "p3", "p4"}),
            ("_lastUpdated=lt2024-06-01T08:00:02Z,gt2024-06-01T08:00:03Z", {"p1", "p4"}),
        ],
    )


def appointment(aid: str, actors: list[str], minutes: int | None, kg: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Appointment",
        "id": aid,
        "status": "booked",
        "participant": [{"actor": {"reference": a}, "status": "accepted"} for a in actors],
    }
    if minutes is not None:
        body["minutesDuration"] = minutes
    if kg is not None:
        body["extension"] = [
            {"url": "http://x/weight", "valueQuantity": {"value": kg, "system": UCUM, "code": "kg"}}
        ]
    return body


async def test_reference(searcher: Searcher) -> None:
    await searcher.put(*SLOTS[:4])
    await searcher.check(
        "Slot",
        [
            ("schedule=Schedule/sch1", {"s1", "s3"}),
            ("schedule=sch2", {"s2", "s4"}),
            ("schedule:Schedule=sch1", {"s1", "s3"}),
            ("schedule=Schedule/sch1/_history/2", {"s1", "s3"}),
            ("schedule=sch1,sch2&status=busy", {"s2"}),
        ],
    )
    await searcher.put(
        appointment("a1", ["Practitioner/p1", "Location/loc1"], 20, 70.5),
        appointment(
            "a2", ["Practitioner/p2", "https://other.example/fhir/Practitioner/p1"], 15, 80
        ),
        {"resourceType": "Appointment", "id": "a3", "status": "proposed", "participant": []},
    )
    await searcher.check(
        "Appointment",
        [
            ("actor=Practitioner/p1", {"a1"}),  # the remote Practitioner/p1 is another one
            ("actor=p1", {"a1"}),
            ("actor:Practitioner=p1", {"a1"}),
            ("actor:Location=loc1", {"a1"}),
            ("actor:Location=p1", set()),
            ("actor=https://other.example/fhir/Practitioner/p1", {"a2"}),
            ("practitioner=p2", {"a2"}),
            ("location=Location/loc1", {"a1"}),
            ("actor:missing=true", {"a3"}),
        ],
    )


async def test_number_and_quantity(searcher: Searcher) -> None:
    await searcher.put(
        appointment("a1", [], 20, 70.5),
        appointment("a2", [], 15, 80),
        appointment("a3", [], None, None),
    )
    await searcher.check(
        "Appointment",
        [
            ("minutes=20", {"a1"}),
            ("minutes=20.0", {"a1"}),
            ("minutes=gt15", {"a1"}),
            ("minutes=ge15", {"a1", "a2"}),
            ("minutes=lt20", {"a2"}),
            ("minutes=le20", {"a1", "a2"}),
            ("minutes=ne20", {"a2"}),
            ("minutes=ap18", set()),
            ("minutes=ap21", {"a1"}),
            ("minutes:missing=true", {"a3"}),
            ("weight=70.5", {"a1"}),
            (f"weight=gt75|{UCUM}|kg", {"a2"}),
            ("weight=lt100||kg", {"a1", "a2"}),
            ("weight=lt100||g", set()),
            ("weight=70.5|http://other|kg", set()),
        ],
    )


async def test_sort_count_offset_and_total(searcher: Searcher) -> None:
    await searcher.put(*PRACTITIONERS)
    assert await searcher.ids("Practitioner", "") == ["p1", "p2", "p3", "p4"]
    assert await searcher.ids("Practitioner", "_sort=family") == ["p4", "p1", "p2", "p3"]
    assert await searcher.ids("Practitioner", "_sort=-family") == ["p3", "p2", "p1", "p4"]
    assert await searcher.ids("Practitioner", "_sort=gender,-_id") == ["p2", "p1", "p3", "p4"]
    assert await searcher.ids("Practitioner", "_sort=-_lastUpdated&_count=2") == ["p4", "p3"]
    assert await searcher.ids("Practitioner", "_count=2&_offset=1") == ["p2", "p3"]
    assert await searcher.ids("Practitioner", "_count=0") == []
    assert await searcher.count("Practitioner", "gender=female&_count=1") == 2
    assert await searcher.count("Practitioner", "") == 4
    await searcher.put(*SLOTS)
    assert await searcher.ids("Slot", "_sort=start&_count=3") == ["s8", "s5", "s6"]
    by_start = await searcher.ids("Slot", "_sort=-start")
    assert by_start[:2] == ["s12", "s11"] and by_start[-1] == "s13"  # no start: last


async def test_bad_values_are_400(searcher: Searcher) -> None:
    for query in ("start=ge2024-13-01", "start=xx2024", "schedule:Practitioner=p1", "_count=-1"):
        with pytest.raises(Incorrect):
            await searcher.ids("Slot", query)


def test_explain_says_what_runs() -> None:
    from fhir_server.search.registry.parameters import default_registry

    query = parse.parse(
        default_registry(),
        "Slot",
        [("start", "ge2024-06-12T16:20:00.000+02:00"), ("status", "free"), ("_count", "5")],
        default_tz=PARIS,
    )
    lines = plan.explain(query).splitlines()
    assert lines[0].startswith("Slot.start=ge2024-06-12T16:20:00.000+02:00 -> idx_date(param=start")
    assert "high > 2024-06-12T14:20:00.001Z" in lines[0]
    assert lines[1] == "Slot.status=free -> idx_token(param=status, code = 'free')"
    assert lines[2] == "Slot: not deleted, order by pk (creation order), limit 5"


def place(lid: str, lat: float | None, lon: float | None) -> dict[str, Any]:
    body: dict[str, Any] = {"resourceType": "Location", "id": lid, "name": lid}
    if lat is not None and lon is not None:
        body["position"] = {"latitude": lat, "longitude": lon}
    return body


PLACES = [
    place("paris", 48.8566, 2.3522),
    place("north5", 48.9016, 2.3522),  # 0.045 degrees north: 5.0038 km
    place("versailles", 48.8049, 2.1204),  # 17.8 km
    place("lyon", 45.7640, 4.8357),  # 392 km
    place("east", 0.0, 179.95),
    place("west", 0.0, -179.95),  # 11.1 km from "east", across the antimeridian
    place("pole1", 89.99, 0.0),
    place("pole2", 89.99, 180.0),  # 2.2 km from pole1, over the pole
    place("nowhere", None, None),
]


async def test_near(searcher: Searcher) -> None:
    await searcher.put(*PLACES)
    here = "48.8566|2.3522"
    await searcher.check(
        "Location",
        [
            (f"near={here}|10|km", {"paris", "north5"}),
            (f"near={here}", {"paris", "north5"}),  # default: 10 km
            (f"near={here}||km", {"paris", "north5"}),
            (f"near={here}|20", {"paris", "north5", "versailles"}),
            (f"near={here}|5000|m", {"paris"}),
            (f"near={here}|5010|m", {"paris", "north5"}),
            (f"near={here}|3.2|mi", {"paris", "north5"}),
            (f"near={here}|3.1|[mi_i]", {"paris"}),
            (f"near={here}|0", {"paris"}),
            (f"near={here}|400|km", {"paris", "north5", "versailles", "lyon"}),
            (f"near={here}|1|km,45.764|4.8357|1|km", {"paris", "lyon"}),
            (f"near={here}|20&name=paris,lyon", {"paris"}),
            ("near=0|179.99|10", {"east", "west"}),
            ("near=0|-179.99|5", {"west"}),
            ("near=89.99|0|3", {"pole1", "pole2"}),
            ("near=90|0|2", {"pole1", "pole2"}),
            ("near=89.99|90|1", set()),
            ("near=0|0|25000", {p["id"] for p in PLACES} - {"nowhere"}),
            ("near:missing=true", {"nowhere"}),
        ],
    )


async def test_near_is_the_haversine_distance(searcher: Searcher) -> None:
    rng = random.Random(48_8566)
    places = []
    for i in range(150):
        if i % 3 == 0:  # clustered around Paris, the rest anywhere
            lat, lon = 48.85 + rng.uniform(-0.3, 0.3), 2.35 + rng.uniform(-0.4, 0.4)
        else:
            lat, lon = rng.uniform(-90, 90), rng.uniform(-180, 180)
        places.append(place(f"x{i}", round(lat, 6), round(lon, 6)))
    await searcher.put(*places)
    wrong = []
    for _ in range(40):
        lat, lon = rng.uniform(-89.9, 89.9), rng.uniform(-180, 180)
        if rng.random() < 0.5:
            lat, lon = 48.85 + rng.uniform(-0.2, 0.2), 2.35 + rng.uniform(-0.2, 0.2)
            km = rng.choice([1.0, 5.0, 10.0, 30.0])
        else:
            km = rng.choice([100.0, 1000.0, 5000.0, 15000.0])
        expected, close = set(), set()
        for loc in places:
            pos = loc["position"]
            d = haversine_km(lat, lon, pos["latitude"], pos["longitude"])
            if abs(d - km) < 1e-6 * km:
                close.add(loc["id"])  # on the circle: either answer is right
            elif d <= km:
                expected.add(loc["id"])
        got = set(await searcher.ids("Location", f"near={lat}|{lon}|{km}|km"))
        if got - close != expected:
            wrong.append(f"near={lat}|{lon}|{km}: extra {got - expected}, missing {expected - got}")
    assert not wrong, "\n".join(wrong)


def test_bounding_box_contains_the_circle() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        lat, lon = rng.uniform(-90, 90), rng.uniform(-180, 180)
        km = 10 ** rng.uniform(-1, 4.3)
        box = geo.bounding_box(lat, lon, km)
        bearing = rng.uniform(0, 2 * math.pi)
        # a point on the circle (spherical destination formula)
        d, p1, l1 = km / geo.EARTH_RADIUS_KM, math.radians(lat), math.radians(lon)
        p2 = math.asin(math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(bearing))
        l2 = l1 + math.atan2(
            math.sin(bearing) * math.sin(d) * math.cos(p1),
            math.cos(d) - math.sin(p1) * math.sin(p2),
        )
        lat2, lon2 = math.degrees(p2), (math.degrees(l2) + 540) % 360 - 180
        assert box.lat_low - 1e-9 <= lat2 <= box.lat_high + 1e-9
        assert any(a - 1e-9 <= lon2 <= b + 1e-9 for a, b, _ in box.lon_ranges), (lat, lon, km)


def test_near_values() -> None:
    from fhir_server.search.registry.parameters import default_registry

    def near(value: str) -> Any:
        (c,) = parse.parse(
            default_registry(), "Location", [("near", value)], default_tz=PARIS
        ).criteria
        return c.values

    assert near("48.8|2.3|2|km") == (parse.NearValue(48.8, 2.3, 2.0),)
    assert near("48.8|2.3|500|m") == (parse.NearValue(48.8, 2.3, 0.5),)
    assert near("48.8|2.3") == (parse.NearValue(48.8, 2.3, parse.DEFAULT_NEAR_KM),)
    for bad in ("91|0", "0|181", "a|b", "1", "1|2|3|parsec", "1|2|-1", "1|2|3|km|x", "nan|0"):
        with pytest.raises(Incorrect) as info:
            near(bad)
        assert info.value.issues[0].expression == ("near",)


async def test_sort_by_distance(searcher: Searcher) -> None:
    await searcher.put(*PLACES)
    here = "near=48.8566|2.3522|500"
    assert await searcher.ids("Location", f"{here}&_sort=near") == [
        "paris",
        "north5",
        "versailles",
        "lyon",
    ]
    assert await searcher.ids("Location", f"_sort=-near&{here}") == [
        "lyon",
        "versailles",
        "north5",
        "paris",
    ]
    assert await searcher.ids("Location", "near=0|-179.99|50&_sort=near") == ["west", "east"]
    with pytest.raises(Incorrect) as info:
        await searcher.ids("Location", "_sort=near")
    assert info.value.issues[0].expression == ("_sort",)


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """The reference formula (degrees in, km out) the SQL distance is checked against."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    h = (
        math.sin((p2 - p1) / 2) ** 2
        + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    )
    return 2 * geo.EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))
