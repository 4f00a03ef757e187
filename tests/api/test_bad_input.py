"""Bad input: always an OperationOutcome with the right status, and nothing stored."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from httpx import AsyncClient

from fhir_server.storage.port import Store
from tests.api.conftest import FHIR, slot

pytestmark = pytest.mark.asyncio


def assert_outcome(
    r: Any, status: int, code: str | None = None, expression: str | None = None
) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/fhir+json")
    body: dict[str, Any] = r.json()
    assert body["resourceType"] == "OperationOutcome"
    assert "detail" not in body
    if code is not None:
        assert code in [i["code"] for i in body["issue"]], body
    if expression is not None:
        assert any(expression in i.get("expression", []) for i in body["issue"]), body
    return body


async def assert_nothing_stored(store: Store) -> None:
    page = await store.history(res_type=None, res_id=None, since=None, at=None, count=1, offset=0)
    assert page.total == 0


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b'{"resourceType": "Slot", "status": "free",', "truncated"),
        (b"{resourceType: Slot}", "malformed"),
        (b"", "empty"),
        (b"[1, 2]", "not an object"),
        (b'"Slot"', "a string"),
    ],
)
async def test_unparseable_bodies(client: AsyncClient, store: Store, raw: bytes, why: str) -> None:
    r = await client.post("/Slot", content=raw, headers={"Content-Type": FHIR})
    assert_outcome(r, 400, "structure")
    await assert_nothing_stored(store)


async def test_wrong_content_type(client: AsyncClient, store: Store) -> None:
    r = await client.post(
        "/Slot", content=orjson.dumps(slot()), headers={"Content-Type": "text/plain"}
    )
    assert_outcome(r, 415, "not-supported")
    r = await client.post(
        "/Slot", content=b"<Slot/>", headers={"Content-Type": "application/fhir+xml"}
    )
    assert_outcome(r, 415)
    await assert_nothing_stored(store)


async def test_ten_megabyte_body(client: AsyncClient, store: Store) -> None:
    big = slot(comment="x" * (10 * 1024 * 1024))
    r = await client.post("/Slot", content=orjson.dumps(big), headers={"Content-Type": FHIR})
    assert_outcome(r, 413, "too-costly")

    async def chunks() -> Any:  # no Content-Length: the limit is enforced while reading
        for _ in range(20):
            yield b" " * (512 * 1024)

    r = await client.post("/Slot", content=chunks(), headers={"Content-Type": FHIR})
    assert_outcome(r, 413)
    await assert_nothing_stored(store)


async def test_other_type_on_typed_url(client: AsyncClient, store: Store) -> None:
    r = await client.post("/Practitioner", json=slot(), headers={"Content-Type": FHIR})
    assert_outcome(r, 400, "invalid", "resourceType")
    r = await client.put("/Practitioner/s1", json=slot(id="s1"), headers={"Content-Type": FHIR})
    assert_outcome(r, 400)
    await assert_nothing_stored(store)


async def test_id_mismatch_and_missing_id(client: AsyncClient, store: Store) -> None:
    r = await client.put("/Slot/a", json=slot(id="b"), headers={"Content-Type": FHIR})
    assert_outcome(r, 400, "invalid", "Slot.id")
    r = await client.put("/Slot/a", json=slot(), headers={"Content-Type": FHIR})
    assert_outcome(r, 400, "required")
    r = await client.put("/Slot/bad id!", json=slot(id="bad id!"), headers={"Content-Type": FHIR})
    assert_outcome(r, 400)
    await assert_nothing_stored(store)


@pytest.mark.parametrize(
    ("change", "expression", "code"),
    [
        ({"foo": 1}, "Slot.foo", "structure"),
        ({"start": 12}, "Slot.start", "value"),
        ({"start": "2024-13-45T25:00"}, "Slot.start", "value"),
        ({"start": "2026-06-12T16:20:00"}, "Slot.start", "value"),  # instant without a zone
        ({"overbooked": "yes"}, "Slot.overbooked", "value"),
        ({"identifier": {"value": "x"}}, "Slot.identifier", "structure"),
        ({"comment": ""}, "Slot.comment", "value"),
        ({"status": None}, "Slot.status", "value"),
        (
            {"schedule": {"reference": "Schedule/1", "extra": True}},
            "Slot.schedule.extra",
            "structure",
        ),
    ],
)
async def test_invalid_resources(
    client: AsyncClient, store: Store, change: dict[str, Any], expression: str, code: str
) -> None:
    r = await client.post(
        "/Slot", content=orjson.dumps(slot(**change)), headers={"Content-Type": FHIR}
    )
    assert_outcome(r, 400, code, expression)
    await assert_nothing_stored(store)


async def test_datetime_with_time_needs_zone(client: AsyncClient, store: Store) -> None:
    body = {"resourceType": "Schedule", "planningHorizon": {"start": "2026-06-12T08:00:00"}}
    r = await client.post("/Schedule", json=body, headers={"Content-Type": FHIR})
    assert_outcome(r, 400, "value", "Schedule.planningHorizon.start")
    await assert_nothing_stored(store)


async def test_missing_required_element(client: AsyncClient, store: Store) -> None:
    body = slot()
    del body["status"]
    r = await client.post("/Slot", json=body, headers={"Content-Type": FHIR})
    assert_outcome(r, 400, "required", "Slot.status")
    await assert_nothing_stored(store)


async def test_unknown_type_and_ids(client: AsyncClient) -> None:
    assert_outcome(await client.get("/Patient/1"), 404, "not-supported")
    assert_outcome(
        await client.post(
            "/Patient", json={"resourceType": "Patient"}, headers={"Content-Type": FHIR}
        ),
        404,
        "not-supported",
    )
    assert_outcome(await client.get("/Slot/unknown"), 404, "not-found")
    assert_outcome(await client.get("/no/such/deep/path/here"), 404)
    assert_outcome(await client.request("PURGE", "/Slot"), 405)


@pytest.mark.usefixtures("sched_1")
async def test_patch_producing_invalid_resource(client: AsyncClient, store: Store) -> None:
    await client.put("/Slot/s1", json=slot(id="s1"), headers={"Content-Type": FHIR})
    patch_headers = {"Content-Type": "application/json-patch+json"}
    for ops, status in [
        ([{"op": "replace", "path": "/start", "value": 12}], 422),
        ([{"op": "remove", "path": "/status"}], 422),
        ([{"op": "replace", "path": "/id", "value": "other"}], 422),
        ([{"op": "replace", "path": "/resourceType", "value": "Practitioner"}], 422),
        ([{"op": "remove", "path": "/nothing-here"}], 422),
        ([{"op": "jump", "path": "/status"}], 422),
        ({"op": "replace"}, 400),
    ]:
        r = await client.patch("/Slot/s1", content=orjson.dumps(ops), headers=patch_headers)
        assert_outcome(r, status)
    assert (await client.get("/Slot/s1")).headers["etag"] == 'W/"1"'
    assert_outcome(await client.patch("/Slot/s1", json=[], headers={"Content-Type": FHIR}), 415)


async def test_internal_failure_has_no_stack_trace(store: Store, settings: Any) -> None:
    import httpx

    from fhir_server.app import create_app

    class Broken:
        dialect = "broken"

        async def read(self, *_: Any) -> None:
            raise RuntimeError("secret internals at /srv/db")

    app = create_app(settings, store=Broken())  # type: ignore[arg-type]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            r = await c.get("/Slot/1")
    body = assert_outcome(r, 500, "exception")
    assert "secret" not in r.text and "Traceback" not in r.text and body["issue"][0]["diagnostics"]
