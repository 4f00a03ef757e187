"""read, vread, create, update, delete, history and HTTP details, on both engines."""

from __future__ import annotations

import orjson
import pytest
from httpx import AsyncClient

from tests.api.conftest import FHIR, practitioner, slot

pytestmark = pytest.mark.asyncio


@pytest.mark.usefixtures("sched_1")
async def test_create_read_roundtrip_keeps_bytes(client: AsyncClient) -> None:
    body = slot(comment="Créneau réservé SAS", id="client-id")
    r = await client.post("/Slot", content=orjson.dumps(body), headers={"Content-Type": FHIR})
    assert r.status_code == 201, r.text
    assert r.headers["content-type"] == "application/fhir+json; charset=utf-8"
    assert r.headers["etag"] == 'W/"1"'
    assert "last-modified" in r.headers
    created = r.json()
    assert created["id"] != "client-id"  # POST ignores a client id
    assert r.headers["location"] == f"http://testserver/Slot/{created['id']}/_history/1"
    assert created["meta"]["versionId"] == "1"
    read = await client.get(f"/Slot/{created['id']}")
    assert read.status_code == 200
    assert read.content == r.content  # stored bytes served as they are
    assert list(read.json())[:3] == ["resourceType", "id", "meta"]
    assert read.json()["comment"] == "Créneau réservé SAS"


@pytest.mark.parametrize(
    "media", ["application/fhir+json", "application/json+fhir", "application/json"]
)
async def test_accepted_media_types(client: AsyncClient, media: str) -> None:
    r = await client.post(
        "/Practitioner",
        content=orjson.dumps(practitioner()),
        headers={"Content-Type": f"{media}; charset=utf-8"},
    )
    assert r.status_code == 201


@pytest.mark.usefixtures("sched_1")
async def test_update_vread_history_delete(client: AsyncClient) -> None:
    r = await client.put("/Slot/s1", json=slot(id="s1"), headers={"Content-Type": FHIR})
    assert r.status_code == 201  # update-as-create
    r = await client.put(
        "/Slot/s1", json=slot(id="s1", status="busy"), headers={"Content-Type": FHIR}
    )
    assert r.status_code == 200 and r.headers["etag"] == 'W/"2"'
    v1 = await client.get("/Slot/s1/_history/1")
    assert v1.status_code == 200 and v1.json()["status"] == "free"
    assert (await client.get("/Slot/s1/_history/9")).status_code == 404
    hist = (await client.get("/Slot/s1/_history")).json()
    assert hist["type"] == "history" and hist["total"] == 2
    assert [e["resource"]["meta"]["versionId"] for e in hist["entry"]] == ["2", "1"]
    assert (await client.delete("/Slot/s1")).status_code == 204
    gone = await client.get("/Slot/s1")
    assert gone.status_code == 410 and gone.json()["issue"][0]["code"] == "deleted"
    assert (await client.delete("/Slot/s1")).status_code == 204  # idempotent
    hist = (await client.get("/Slot/s1/_history")).json()
    assert hist["total"] == 3 and hist["entry"][0]["request"]["method"] == "DELETE"
    assert "resource" not in hist["entry"][0]
    # a deleted resource can be brought back by an update
    back = await client.put("/Slot/s1", json=slot(id="s1"), headers={"Content-Type": FHIR})
    assert back.status_code == 201 and back.headers["etag"] == 'W/"4"'


@pytest.mark.usefixtures("sched_1")
async def test_type_and_system_history_with_since(client: AsyncClient) -> None:
    await client.put("/Slot/a", json=slot(id="a"), headers={"Content-Type": FHIR})
    first = await client.get("/Slot/a")
    since = first.json()["meta"]["lastUpdated"]
    await client.put("/Practitioner/p", json=practitioner(id="p"), headers={"Content-Type": FHIR})
    system = (await client.get("/_history")).json()
    assert system["total"] == 3  # with Schedule/sched-1, which the Slot references
    typed = (await client.get("/Slot/_history")).json()
    assert typed["total"] == 1
    later = (await client.get("/_history", params={"_since": since})).json()
    assert {e["resource"]["resourceType"] for e in later["entry"]} >= {"Practitioner"}
    paged = (await client.get("/_history", params={"_count": 1})).json()
    assert len(paged["entry"]) == 1 and any(link["relation"] == "next" for link in paged["link"])
    bad = await client.get("/_history", params={"_since": "yesterday"})
    assert bad.status_code == 400


@pytest.mark.usefixtures("sched_1")
async def test_if_match(client: AsyncClient) -> None:
    await client.put("/Slot/s1", json=slot(id="s1"), headers={"Content-Type": FHIR})
    await client.put("/Slot/s1", json=slot(id="s1"), headers={"Content-Type": FHIR})
    stale = await client.put(
        "/Slot/s1",
        json=slot(id="s1", status="busy"),
        headers={"Content-Type": FHIR, "If-Match": 'W/"1"'},
    )
    assert stale.status_code == 412
    assert (await client.get("/Slot/s1")).json()["status"] == "free"
    ok = await client.put(
        "/Slot/s1",
        json=slot(id="s1", status="busy"),
        headers={"Content-Type": FHIR, "If-Match": 'W/"2"'},
    )
    assert ok.status_code == 200 and ok.headers["etag"] == 'W/"3"'


@pytest.mark.usefixtures("sched_1")
async def test_prefer_return(client: AsyncClient) -> None:
    minimal = await client.post(
        "/Slot", json=slot(), headers={"Content-Type": FHIR, "Prefer": "return=minimal"}
    )
    assert minimal.status_code == 201 and minimal.content == b"" and "location" in minimal.headers
    oo = await client.post(
        "/Slot", json=slot(), headers={"Content-Type": FHIR, "Prefer": "return=OperationOutcome"}
    )
    assert oo.status_code == 201 and oo.json()["resourceType"] == "OperationOutcome"


@pytest.mark.usefixtures("sched_1")
async def test_patch(client: AsyncClient) -> None:
    await client.put("/Slot/s1", json=slot(id="s1"), headers={"Content-Type": FHIR})
    ops = [{"op": "replace", "path": "/status", "value": "busy"}]
    r = await client.patch(
        "/Slot/s1",
        content=orjson.dumps(ops),
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert r.status_code == 200 and r.json()["status"] == "busy" and r.headers["etag"] == 'W/"2"'


async def test_metadata_is_generated(client: AsyncClient) -> None:
    r = await client.get("/metadata")
    assert r.status_code == 200
    cs = r.json()
    assert cs["resourceType"] == "CapabilityStatement" and cs["fhirVersion"] == "4.0.1"
    types = {res["type"]: res for res in cs["rest"][0]["resource"]}
    assert set(types) == {
        "Appointment",
        "AuditEvent",
        "Endpoint",
        "HealthcareService",
        "Location",
        "Organization",
        "Practitioner",
        "PractitionerRole",
        "Schedule",
        "Slot",
        "Subscription",
    }
    codes = {i["code"] for i in types["Slot"]["interaction"]}
    assert codes == {
        "read",
        "vread",
        "update",
        "patch",
        "delete",
        "history-instance",
        "history-type",
        "create",
        "search-type",
    }
    assert {i["code"] for i in cs["rest"][0]["interaction"]} == {
        "transaction",
        "batch",
        "history-system",
    }
    assert any(p["name"] == "start" for p in types["Slot"]["searchParam"])


async def test_format_and_accept(client: AsyncClient) -> None:
    assert (await client.get("/metadata", params={"_format": "json"})).status_code == 200
    assert (
        await client.get("/metadata", params={"_format": "application/fhir+json"})
    ).status_code == 200
    xml = await client.get("/metadata", params={"_format": "xml"})
    assert xml.status_code == 406 and xml.json()["resourceType"] == "OperationOutcome"
    assert (
        await client.get("/metadata", headers={"Accept": "application/fhir+xml"})
    ).status_code == 406
    assert (
        await client.get("/metadata", headers={"Accept": "application/json+fhir"})
    ).status_code == 200


@pytest.mark.usefixtures("sched_1")
async def test_base_url_from_trusted_proxy_only(client: AsyncClient) -> None:
    headers = {
        "Content-Type": FHIR,
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "sas.example.org",
        "X-Forwarded-Prefix": "/fhir",
    }
    r = await client.post("/Slot", json=slot(), headers=headers)
    assert r.headers["location"].startswith("https://sas.example.org/fhir/Slot/")


@pytest.mark.usefixtures("sched_1")
async def test_forwarded_headers_ignored_from_untrusted_client(
    store: object, settings: object
) -> None:
    import httpx

    from fhir_server.app import create_app

    app = create_app(settings, store=store)  # type: ignore[arg-type]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            r = await c.post(
                "/Slot",
                json=slot(),
                headers={"Content-Type": FHIR, "X-Forwarded-Host": "evil.example"},
            )
    assert r.headers["location"].startswith("http://testserver/Slot/")
