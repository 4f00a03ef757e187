"""``POST [base]/$ingest?format=NAME`` on the real app (in process), SQLite and PostgreSQL:
the report as an OperationOutcome with locations, vendors and admins only, bounded bodies."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from fhir_server.app import create_app
from fhir_server.storage.port import Store
from mappings import sas
from tests.ingest.conftest import ingest_settings
from tests.ingest.simple_format import NAME, feed_json, person, slots

URL = f"/$ingest?format={NAME}&booking-url=https://rdv.example.org/book"
HEADERS = {"content-type": "application/json", "accept": "application/fhir+json"}


async def client_for(store: Store, role: str, **extra: Any) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(
        ingest_settings(auth="none", default_role=role, max_body_bytes=50_000, **extra), store
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c


@pytest.fixture
async def vendor(store: Store) -> AsyncIterator[httpx.AsyncClient]:
    async for c in client_for(store, "vendor"):
        yield c


def locations(outcome: dict[str, Any]) -> list[str]:
    return [loc for i in outcome["issue"] for loc in i.get("location", [])]


async def test_a_vendor_ingests_and_gets_the_report(
    vendor: httpx.AsyncClient, store: Store
) -> None:
    bad = person("b", "10000000023", [{"key": "x", "start": "2026-06-12T25:00:00"}])
    doc = feed_json([person("a", "10000000015", slots("2026-06-12", 2)), bad])
    r = await vendor.post(URL, content=orjson.dumps(doc), headers=HEADERS)
    assert r.status_code == 200, r.text
    outcome = r.json()
    assert outcome["resourceType"] == "OperationOutcome"
    texts = [i.get("diagnostics", "") for i in outcome["issue"]]
    assert "practitioner a: 5 created, 0 updated, 0 removed, 0 unchanged, 0 rejected" in texts
    assert any(t.startswith("practitioner b: 0 created") and "3 rejected" in t for t in texts)
    assert "body#/practitioners/1/slots/0" in locations(outcome)
    assert await store.read("Slot", sas.stable_id("simple", "slot", "a-2026-06-12-1")) is not None
    assert await store.read("Practitioner", sas.practitioner_id("simple", "b")) is None
    again = await vendor.post(URL, content=orjson.dumps(doc), headers=HEADERS)
    assert "5 unchanged" in again.json()["issue"][0]["diagnostics"]


async def test_unreadable_input_is_a_400_with_its_location(vendor: httpx.AsyncClient) -> None:
    r = await vendor.post(URL, content=b'{"practitioners": [', headers=HEADERS)
    assert r.status_code == 400
    assert locations(r.json()) == ["body:1"]
    deep = b"[" * 10_000 + b"]" * 10_000
    r = await vendor.post(URL, content=deep, headers=HEADERS)
    assert r.status_code == 400 and "depth" in r.text  # orjson stops at 1024 levels
    r = await vendor.post(URL, content=b"x" * 60_000, headers=HEADERS)
    assert r.status_code == 413
    r = await vendor.post("/$ingest?format=nope", content=b"{}", headers=HEADERS)
    assert r.status_code == 400 and "unknown format" in r.text


async def test_only_vendors_and_admins_ingest(store: Store) -> None:
    doc = orjson.dumps(feed_json([person("a", "10000000015", slots("2026-06-12", 1))]))
    for role, status in (("regulator", 403), ("platform", 403), ("admin", 200)):
        async for c in client_for(store, role):
            r = await c.post(URL, content=doc, headers=HEADERS)
            assert r.status_code == status, (role, r.text)


async def test_the_capability_statement_lists_the_ingest_operation(
    vendor: httpx.AsyncClient,
) -> None:
    statement = (await vendor.get("/metadata")).json()
    [rest] = statement["rest"]
    [ingest] = [o for o in rest["operation"] if o["name"] == "ingest"]
    assert ingest["definition"] == "https://github.com/sas-fhir-server/OperationDefinition/ingest"
