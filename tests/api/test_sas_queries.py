"""The SAS platform's queries, sent exactly as the guide and the test kit send them.

The demo data set (``examples/sas_demo.py``) is loaded through a transaction, then each
query is sent raw, percent-encoded with sorted keys (as the kit's Ruby client does) and with
its parameters shuffled; every answer must pass the checks of TEST-KIT.md §4.
"""

from __future__ import annotations

import random
import re
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit
from zoneinfo import ZoneInfo

import pytest
from httpx import AsyncClient

from tests.api.conftest import FHIR, PACKAGES

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
from sas_demo import build_demo_bundle

pytestmark = pytest.mark.asyncio
PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 6, 9, 7, 0, tzinfo=PARIS)  # a Tuesday morning: every agenda is open
END = NOW + timedelta(hours=72)
RPPS = "urn:oid:1.2.250.1.71.4.2.1"
IDNST = "urn:oid:1.2.250.1.71.4.2.2"
INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}[+-]\d{2}:\d{2}$")
PROFILES = {
    "Slot": ("http://sas.fr/fhir/StructureDefinition/FrSlotAgregateur",),
    "Schedule": ("http://sas.fr/fhir/StructureDefinition/FrScheduleAgregateur",),
    "Practitioner": ("http://sas.fr/fhir/StructureDefinition/FrPractitionerAgregateur",),
    "PractitionerRole": (
        "http://sas.fr/fhir/StructureDefinition/FrPractitionerRoleExerciceAgregateur",
    ),
}


@pytest.fixture
async def sas(client: AsyncClient) -> AsyncClient:
    r = await client.post("/", json=build_demo_bundle(NOW, days=3), headers={"Content-Type": FHIR})
    assert r.status_code == 200, r.text
    return client


def ps_pairs(*rpps: str, tz: str = "+00:00", cpts: bool = False) -> list[tuple[str, str]]:
    ids = ", ".join(f"{RPPS}|{r}" for r in rpps)  # the guide's example has spaces after commas
    pairs = [("_include", "Slot:schedule"), ("_include:iterate", "Schedule:actor")]
    if cpts:
        pairs += [
            ("_include", "Slot:service-type-reference"),
            ("_include:iterate", "HealthcareService:organization"),
        ]
    return [
        *pairs,
        ("start", f"ge{NOW:%Y-%m-%dT%H:%M:%S}.000{tz}"),
        ("start", f"le{END:%Y-%m-%dT%H:%M:%S}.000{tz}"),
        ("schedule.actor:Practitioner.identifier", ids),
        ("status", "free"),
    ]


def encodings(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """The same query three ways: raw, kit-encoded (sorted keys, %7C %3A %2B %2C), shuffled."""
    raw = "&".join(f"{k}={v}" for k, v in pairs)
    kit = "&".join(
        f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in sorted(pairs, key=lambda p: p[0])
    )
    shuffled = pairs[:]
    random.Random(7).shuffle(shuffled)
    mixed = "&".join(f"{k}={v.replace('|', '%7C')}" for k, v in shuffled)
    return {"raw": raw, "kit": kit, "shuffled": mixed}


def resources(bundle: dict[str, Any], rtype: str, mode: str | None = None) -> list[dict[str, Any]]:
    return [
        e["resource"]
        for e in bundle.get("entry", [])
        if e["resource"]["resourceType"] == rtype and (mode is None or e["search"]["mode"] == mode)
    ]


def no_empty_elements(node: Any, where: str = "") -> None:
    assert node not in ("", [], {}, None), f"empty element at {where}"
    if isinstance(node, dict):
        for key, value in node.items():
            no_empty_elements(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            no_empty_elements(value, f"{where}[{i}]")


def window_start(tz: str) -> datetime:
    """The instant ``start=ge`` names: the kit's Paris time labelled ``tz`` (none = Paris)."""
    if not tz:
        return NOW
    return datetime.fromisoformat(f"{NOW:%Y-%m-%dT%H:%M:%S}{tz}")


def check_common(bundle: dict[str, Any], query: str, tz: str = "+00:00") -> None:
    """The checks of TEST-KIT.md §4 that hold for every PS/CPTS answer."""
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    assert bundle.get("entry"), "the kit fails an empty answer"
    slots = resources(bundle, "Slot")
    assert bundle["total"] == len(slots) == len(resources(bundle, "Slot", "match"))
    assert [link["relation"] for link in bundle["link"]] == ["self"]
    sent = sorted(parse_qsl(query, keep_blank_values=True))
    echoed = sorted(parse_qsl(urlsplit(bundle["link"][0]["url"]).query, keep_blank_values=True))
    assert echoed == sent
    for entry in bundle["entry"]:
        assert entry["fullUrl"].endswith(
            f"/{entry['resource']['resourceType']}/{entry['resource']['id']}"
        )
        no_empty_elements(entry["resource"], entry["resource"]["resourceType"])
    for s in slots:
        assert s["status"] == "free"
        assert INSTANT.match(s["start"]) and INSTANT.match(s["end"]), (s["start"], s["end"])
        start, end = datetime.fromisoformat(s["start"]), datetime.fromisoformat(s["end"])
        assert start < end
        assert start >= window_start(tz)  # no slot before the window
        assert start.date() <= END.date()
        assert s.get("comment", "").strip()
        codes = {c["code"] for c in s.get("appointmentType", {}).get("coding", [])}
        assert codes <= {"ROUTINE", "WALKIN"}
        assert s["schedule"]["reference"].startswith("Schedule/")
    for rtype, profiles in PROFILES.items():
        for res in resources(bundle, rtype):
            assert set(res["meta"]["profile"]) & set(profiles) or rtype == "Slot", res["meta"]
    for role in resources(bundle, "PractitionerRole"):
        (location,) = role["contained"]
        assert role["location"][0]["reference"] == f"#{location['id']}"
        address = location["address"]
        assert (
            address["line"] and address["city"] and re.match(r"^[0-9]{5}$", address["postalCode"])
        )
        practitioner_ids = {f"Practitioner/{p['id']}" for p in resources(bundle, "Practitioner")}
        assert role["practitioner"]["reference"] in practitioner_ids
    for schedule in resources(bundle, "Schedule"):
        actors = {a["reference"] for a in schedule["actor"]}
        assert any(a.startswith("Practitioner/") for a in actors)
        assert any(a.startswith("PractitionerRole/") for a in actors)
        in_bundle = {
            f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle["entry"]
        }
        assert actors <= in_bundle


@pytest.mark.parametrize("form", ["raw", "kit", "shuffled"])
async def test_ps_single_place(sas: AsyncClient, form: str) -> None:
    query = encodings(ps_pairs("810999900011"))[form]
    r = await sas.get(f"/Slot?{query}", headers={"Accept": "application/json+fhir"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/fhir+json")
    bundle = r.json()
    check_common(bundle, query)
    (practitioner,) = resources(bundle, "Practitioner")
    assert practitioner["identifier"][0]["value"] == "810999900011"
    assert re.match(r"^8[0-9]{11}$", practitioner["identifier"][0]["value"])
    assert (
        len(resources(bundle, "PractitionerRole")) == 1 and len(resources(bundle, "Schedule")) == 1
    )


async def test_ps_two_places(sas: AsyncClient) -> None:
    query = encodings(ps_pairs("810999900029", tz="+02:00"))["raw"]
    bundle = (await sas.get(f"/Slot?{query}")).json()
    check_common(bundle, query, "+02:00")
    assert len(resources(bundle, "Practitioner")) == 1
    assert (
        len(resources(bundle, "PractitionerRole")) == 2 and len(resources(bundle, "Schedule")) == 2
    )


async def test_two_practitioners_in_one_query(sas: AsyncClient) -> None:
    query = encodings(ps_pairs("810999900011", "810999900029", tz=""))["kit"]  # no offset: Paris
    bundle = (await sas.get(f"/Slot?{query}")).json()
    check_common(bundle, query, "")
    assert len(resources(bundle, "Practitioner")) == 2
    assert (
        len(resources(bundle, "PractitionerRole")) >= 2 and len(resources(bundle, "Schedule")) >= 2
    )


@pytest.mark.skipif(not PACKAGES.is_dir(), reason=f"SAS package cache not found at {PACKAGES}")
@pytest.mark.parametrize("form", ["raw", "kit"])
async def test_cpts(sas: AsyncClient, form: str) -> None:
    query = encodings(ps_pairs("810999900037", tz="", cpts=True))[form]
    bundle = (await sas.get(f"/Slot?{query}")).json()
    check_common(bundle, query, "")
    services = resources(bundle, "HealthcareService", "include")
    organizations = resources(bundle, "Organization", "include")
    assert len(services) >= 2 and len(services) == len(organizations)
    org_ids = {f"Organization/{o['id']}" for o in organizations}
    assert {s["providedBy"]["reference"] for s in services} <= org_ids
    assert all(re.match(r"^1[0-9]{9}$", o["identifier"][0]["value"]) for o in organizations)
    service_ids = {f"HealthcareService/{s['id']}" for s in services}
    linked = set()
    for s in resources(bundle, "Slot"):
        assert {c["code"] for c in s["meta"]["security"]} == {"CPTS"}
        for st in s["serviceType"]:
            if any(c.get("code") == "604" for c in st.get("coding", [])):
                (ext,) = st["extension"]
                linked.add(ext["valueReference"]["reference"])
    assert linked and linked <= service_ids and len(linked) >= 2


@pytest.mark.parametrize("form", ["raw", "encoded"])
async def test_sos(sas: AsyncClient, form: str) -> None:
    pairs = [
        ("_revinclude", "Slot:schedule"),
        ("_include", "Schedule:actor:Location"),
        ("_include:iterate", "Location:organization"),
        ("_has:Slot:schedule:start", f"ge{NOW:%Y-%m-%dT%H:%M:%S}+02:00"),
        ("_has:Slot:schedule:start", f"le{END:%Y-%m-%dT%H:%M:%S}+02:00"),
        ("_has:Slot:schedule:status", "free"),
        (
            "actor:Location.organization.identifier",
            f"{IDNST}|399944001900019,{IDNST}|340426662900033",
        ),
    ]
    query = encodings(pairs)["raw" if form == "raw" else "kit"]
    r = await sas.get(f"/Schedule?{query}")
    assert r.status_code == 200, r.text
    bundle = r.json()
    schedules = resources(bundle, "Schedule", "match")
    assert {s["id"] for s in schedules} == {"sos-estuaire-beaulieu", "sos-estuaire-herblain"}
    assert bundle["total"] == len(schedules)
    assert len(resources(bundle, "Location", "include")) == 2
    assert [o["id"] for o in resources(bundle, "Organization", "include")] == ["sos-estuaire"]
    slots = resources(bundle, "Slot", "include")
    assert slots and all(
        s["schedule"]["reference"]
        in {"Schedule/sos-estuaire-beaulieu", "Schedule/sos-estuaire-herblain"}
        for s in slots
    )
    # the revincluded Slots are those the _has criteria asked for: free, in the window
    for s in slots:
        assert s["status"] == "free" and INSTANT.match(s["start"])
        assert NOW <= datetime.fromisoformat(s["start"]) <= END
    for entry in bundle["entry"]:
        no_empty_elements(entry["resource"])


async def test_unknown_practitioner_gives_an_empty_bundle(sas: AsyncClient) -> None:
    query = encodings(ps_pairs("810000000000"))["raw"]
    bundle = (await sas.get(f"/Slot?{query}")).json()
    assert bundle["total"] == 0 and "entry" not in bundle
    assert bundle["link"][0]["relation"] == "self"
