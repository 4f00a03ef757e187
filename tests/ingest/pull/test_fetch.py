"""Fetching sources over real HTTP on loopback: conditional GET, bounds (size, time),
HTTP errors, the SAS slot search and its pages, mTLS."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import orjson
import pytest

from fhir_server.ingest.pull.config import PullSource, Tls
from fhir_server.ingest.pull.fetch import FetchError, fetch, sas_query
from tests.e2e.tls_support import make_certs
from tests.ingest.pull.feeds import Route, feed_server

NOW = datetime(2026, 6, 15, 8, 0, tzinfo=UTC)


def source(url: str, **extra: Any) -> PullSource:
    return PullSource.model_validate({"name": "s", "url": url, "format": "doctolib"} | extra)


async def test_conditional_get_answers_not_modified() -> None:
    with feed_server() as server:
        server.routes["/a.json"] = Route(b"[]", etag='"v1"', last_modified="Mon, 15 Jun 2026")
        first = await fetch(source(server.url("/a.json")), None, None, 1000, NOW)
        assert first.bodies == [(server.url("/a.json"), b"[]")]
        assert (first.etag, first.last_modified) == ('"v1"', "Mon, 15 Jun 2026")
        again = await fetch(source(server.url("/a.json")), first.etag, None, 1000, NOW)
        assert again.not_modified and again.bodies == [] and again.etag == '"v1"'
        by_date = await fetch(source(server.url("/a.json")), None, "Mon, 15 Jun 2026", 1000, NOW)
        assert by_date.not_modified
        sent = server.of("/a.json")
        assert "If-None-Match" not in sent[0].headers
        assert sent[1].headers["If-None-Match"] == '"v1"'
        assert sent[2].headers["If-Modified-Since"] == "Mon, 15 Jun 2026"


@pytest.mark.parametrize(
    ("route", "said"),
    [
        (Route(b"x", status=500), "HTTP 500"),
        (Route(b"x" * 2000), "2,000 bytes, more than 1,000"),
        (Route(b"x" * 200_000, unannounced=True), "more than the 1,000 bytes allowed"),
        (Route(b"x", delay=3), "no answer within the timeout"),
        (Route(b"x" * 100, stall=3), "no answer within the timeout"),
    ],
)
async def test_failures_say_what_and_where(route: Route, said: str) -> None:
    with feed_server() as server:
        server.routes["/a.json"] = route
        with pytest.raises(FetchError, match=said) as caught:
            await fetch(source(server.url("/a.json?key=secret"), timeout=1), None, None, 1000, NOW)
        assert "secret" not in str(caught.value)  # a query may hold a key: never shown


async def test_unreachable_host() -> None:
    with feed_server() as server:
        url = server.url("/a.json")
    with pytest.raises(FetchError, match="ConnectError"):
        await fetch(source(url, timeout=2), None, None, 1000, NOW)


def sas_pages(base: str) -> tuple[bytes, bytes]:
    """The golden searchset split in two pages, the first with a ``next`` link."""
    doc = orjson.loads(
        (Path(__file__).parents[2] / "mappings/data/sas-fhir/searchset.json").read_bytes()
    )
    entries = doc["entry"]
    first = doc | {"entry": entries[:5]}
    first["link"] = doc["link"] + [{"relation": "next", "url": f"{base}/fhir/page2?cursor=x"}]
    second = {"resourceType": "Bundle", "type": "searchset", "entry": entries[5:]}
    return orjson.dumps(first), orjson.dumps(second)


async def test_sas_search_follows_next_links_into_one_bundle() -> None:
    with feed_server() as server:
        page1, page2 = sas_pages(server.base)
        server.routes["/fhir/Slot"] = Route(page1)
        server.routes["/fhir/page2"] = Route(page2)
        rpps = [f"{10000000000 + n:011d}" for n in range(30)]
        sas = source(server.url("/fhir"), format="sas-fhir", rpps=rpps)
        fetched = await fetch(sas, None, None, 1_000_000, NOW)
        assert len(fetched.bodies) == 2  # 30 practitioners: 25 per query
        assert fetched.requests == 4
        merged = orjson.loads(fetched.bodies[0][1])
        assert len(merged["entry"]) == 10
        assert [link["relation"] for link in merged["link"]] == ["self"]
        query = dict(parse_qsl(server.of("/fhir/Slot")[0].query))
        assert query["status"] == "free" and query["_include"] == "Slot:schedule"
        assert query["_include:iterate"] == "Schedule:actor"
        asked = query["schedule.actor:Practitioner.identifier"].split(",")
        assert len(asked) == 25 and asked[0] == "urn:oid:1.2.250.1.71.4.2.1|810000000000"
        assert server.of("/fhir/Slot")[0].headers["Accept"] == "application/fhir+json"


def test_the_sas_query_is_the_guide_s() -> None:
    sas = source("https://v.example.org/fhir/", format="sas-fhir", rpps=["10000000015"])
    pairs = parse_qsl(sas_query(sas, ["10000000015"], NOW).split("?", 1)[1])
    assert ("start", "ge2026-06-15T10:00:00.000+02:00") in pairs
    assert ("start", "le2026-06-17T10:00:00.000+02:00") in pairs


async def test_sas_pages_are_bounded_and_stay_on_the_host() -> None:
    with feed_server() as server:
        page1, _ = sas_pages(server.base)
        loop = orjson.loads(page1)
        loop["link"][-1]["url"] = server.url("/fhir/Slot?again=1")
        server.routes["/fhir/Slot"] = Route(orjson.dumps(loop))
        sas = source(server.url("/fhir"), format="sas-fhir", rpps=["10000000015"], max_pages=3)
        with pytest.raises(FetchError, match="more than 3 pages"):
            await fetch(sas, None, None, 1_000_000, NOW)
        loop["link"][-1]["url"] = "http://elsewhere.example.org/fhir/Slot"
        server.routes["/fhir/Slot"] = Route(orjson.dumps(loop))
        with pytest.raises(FetchError, match="leaves the source's host"):
            await fetch(sas, None, None, 1_000_000, NOW)
        server.routes["/fhir/Slot"] = Route(b'{"resourceType": "Patient"}')
        with pytest.raises(FetchError, match="not a FHIR Bundle"):
            await fetch(sas, None, None, 1_000_000, NOW)


async def test_mtls_source(tmp_path: Path) -> None:
    certs = make_certs(tmp_path / "certs")
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=certs.ca)
    tls.load_cert_chain(certs.server.cert, certs.server.key)
    tls.verify_mode = ssl.CERT_REQUIRED  # no client certificate, no answer
    with feed_server(tls) as server:
        server.routes["/a.json"] = Route(b"[]")
        pair = certs.clients["valid"]
        good = source(server.url("/a.json"), tls=Tls(cert=pair.cert, key=pair.key, ca=certs.ca))
        assert (await fetch(good, None, None, 1000, NOW)).bodies[0][1] == b"[]"
        without = source(server.url("/a.json"), tls=None, timeout=3)
        with pytest.raises(FetchError):  # our CA is not the system's, nor a client cert sent
            await fetch(without, None, None, 1000, NOW)
        other = certs.clients["self_signed"]
        wrong = source(server.url("/a.json"), tls=Tls(cert=other.cert, key=other.key, ca=certs.ca))
        with pytest.raises(FetchError):
            await fetch(wrong, None, None, 1000, NOW)
        assert server.count("/a.json") == 1  # only the good certificate got through


async def test_a_304_to_an_unconditional_get_is_an_error() -> None:
    with feed_server() as server:
        server.routes["/a.json"] = Route(b"", status=304)
        with pytest.raises(FetchError, match="304 to a GET that was not conditional"):
            await fetch(source(server.url("/a.json")), None, None, 1000, NOW)
