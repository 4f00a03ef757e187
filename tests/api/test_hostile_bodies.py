"""Hostile bodies on every route that takes one: nested too deep, not an object, not JSON.

Each gets a 4xx OperationOutcome, never a 500, and nothing is stored.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest
from httpx import AsyncClient, Response

from fhir_server.core.json_input import MAX_DEPTH, nests_deeper
from fhir_server.storage.port import Store
from tests.api.conftest import FHIR, put_schedules, slot
from tests.api.test_bad_input import assert_nothing_stored, assert_outcome

pytestmark = pytest.mark.asyncio

PATCH_JSON = "application/json-patch+json"
URL = b'"url":"http://example.org/fhir/StructureDefinition/nested"'
IDENTIFIER = "urn:oid:1.2.250.1.213.1.4.10|slot-1"


def extensions(levels: int) -> bytes:
    """An Extension nesting ``levels`` levels of objects and arrays (itself included)."""
    if levels % 2:
        inner = b"{" + URL + b',"valueString":"x"}'
    else:
        inner = b"{" + URL + b',"valueCodeableConcept":{"text":"x"}}'
    wraps = (levels - 1) // 2
    return (b"{" + URL + b',"extension":[') * wraps + inner + b"]}" * wraps


def nested_slot(depth: int, **extra: Any) -> bytes:
    """A valid Slot whose JSON nests exactly ``depth`` levels (the Slot object is level 1)."""
    doc = orjson.dumps(slot(extension=["EXT"], **extra))
    return doc.replace(b'"EXT"', extensions(depth - 2))


def transaction(kind: str, *entries: bytes) -> bytes:
    listed = b",".join(entries)
    return b'{"resourceType":"Bundle","type":"' + kind.encode() + b'","entry":[' + listed + b"]}"


def post_entry(resource: bytes) -> bytes:
    return b'{"request":{"method":"POST","url":"Slot"},"resource":' + resource + b"}"


def patch_adding(extension: bytes) -> bytes:
    return b'[{"op":"add","path":"/extension","value":[' + extension + b"]}]"


def binary_patch_entry(operations: bytes) -> bytes:
    data = base64.b64encode(operations).decode()
    return orjson.dumps(
        {
            "request": {"method": "PATCH", "url": "Slot/s1"},
            "resource": {"resourceType": "Binary", "contentType": PATCH_JSON, "data": data},
        }
    )


def too_deep(r: Response) -> None:
    body = assert_outcome(r, 400, "too-costly")
    assert f"{MAX_DEPTH} levels" in body["issue"][0]["diagnostics"], body


async def stored_s1(client: AsyncClient) -> None:
    """Slot/s1 and the Schedule it names (referential integrity)."""
    await put_schedules(client, "sched-1")
    r = await client.put("/Slot/s1", json=slot(id="s1"), headers={"Content-Type": FHIR})
    assert r.status_code == 201, r.text


async def unchanged_s1(client: AsyncClient, store: Store) -> None:
    assert (await client.get("/Slot/s1")).headers["etag"] == 'W/"1"'
    page = await store.history(res_type=None, res_id=None, since=None, at=None, count=1, offset=0)
    assert page.total == 2  # the Schedule and the Slot, one version each


async def test_the_helpers_nest_exactly() -> None:
    for depth in (MAX_DEPTH, MAX_DEPTH + 1, 7, 8):
        doc = orjson.loads(nested_slot(depth))
        assert not nests_deeper(doc, depth) and nests_deeper(doc, depth - 1)


@pytest.mark.usefixtures("sched_1")
async def test_a_resource_at_the_limit_is_stored(client: AsyncClient) -> None:
    r = await client.post("/Slot", content=nested_slot(MAX_DEPTH), headers={"Content-Type": FHIR})
    assert r.status_code == 201, r.text
    too_deep(
        await client.post(
            "/Slot", content=nested_slot(MAX_DEPTH + 1), headers={"Content-Type": FHIR}
        )
    )


ROUTES = [
    ("POST", "/Slot", lambda doc: doc),
    ("PUT", "/Slot/s1", lambda doc: doc.replace(b"{", b'{"id":"s1",', 1)),
    ("PUT", f"/Slot?identifier={IDENTIFIER}", lambda doc: doc),
    ("POST", "/Slot/$validate", lambda doc: doc),
    ("POST", "/Slot/s1/$validate", lambda doc: doc),
    ("POST", "/", lambda doc: transaction("transaction", post_entry(doc))),
    ("POST", "/", lambda doc: transaction("batch", post_entry(doc))),
]


# MAX_DEPTH + 1: our limit; 1000: deep enough to overflow the recursive walks but still
# parsed by orjson (a 500 before the limit existed); 5000: refused by orjson itself.
@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 1000, 5000])
@pytest.mark.parametrize(("method", "path", "wrap"), ROUTES)
async def test_too_deep_bodies_are_refused(
    client: AsyncClient, store: Store, method: str, path: str, wrap: Any, depth: int
) -> None:
    body = wrap(nested_slot(depth))
    too_deep(await client.request(method, path, content=body, headers={"Content-Type": FHIR}))
    await assert_nothing_stored(store)


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 1000, 5000])
async def test_too_deep_patches_are_refused(client: AsyncClient, store: Store, depth: int) -> None:
    await stored_s1(client)
    operations = patch_adding(extensions(depth - 3))  # array, operation, value array
    r = await client.patch("/Slot/s1", content=operations, headers={"Content-Type": PATCH_JSON})
    too_deep(r)
    r = await client.post(
        "/",
        content=transaction("transaction", binary_patch_entry(operations)),
        headers={"Content-Type": FHIR},
    )
    too_deep(r)
    r = await client.post(
        "/",
        content=transaction("batch", binary_patch_entry(operations)),
        headers={"Content-Type": FHIR},
    )
    assert r.status_code == 200, r.text
    outcome = r.json()["entry"][0]["response"]
    assert outcome["status"].startswith("400")
    assert outcome["outcome"]["issue"][0]["code"] == "too-costly"
    await unchanged_s1(client, store)


async def test_a_patch_may_not_nest_the_resource_past_the_limit(
    client: AsyncClient, store: Store
) -> None:
    """Each patch body is shallow, but patches could deepen a resource a little at a time."""
    await put_schedules(client, "sched-1")
    body = nested_slot(MAX_DEPTH - 1, id="s1")
    r = await client.put("/Slot/s1", content=body, headers={"Content-Type": FHIR})
    assert r.status_code == 201, r.text
    innermost = "/extension/0" * ((MAX_DEPTH - 1) // 2)
    operations = [
        {"op": "remove", "path": f"{innermost}/valueString"},
        {"op": "add", "path": f"{innermost}/extension", "value": [{"url": "u", "valueCoding": {}}]},
    ]
    r = await client.patch(
        "/Slot/s1", content=orjson.dumps(operations), headers={"Content-Type": PATCH_JSON}
    )
    body_ = assert_outcome(r, 400, "too-costly")
    assert "the patched resource" in body_["issue"][0]["diagnostics"]
    await unchanged_s1(client, store)


NOT_OBJECTS = [b"[1, 2]", b'"Slot"', b"42", b"null", b"true"]


@pytest.mark.parametrize("raw", NOT_OBJECTS)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/Slot"),
        ("PUT", "/Slot/s1"),
        ("PUT", f"/Slot?identifier={IDENTIFIER}"),
        ("POST", "/Slot/$validate"),
        ("POST", "/"),
    ],
)
async def test_bodies_that_are_not_objects(
    client: AsyncClient, store: Store, method: str, path: str, raw: bytes
) -> None:
    r = await client.request(method, path, content=raw, headers={"Content-Type": FHIR})
    assert_outcome(r, 400)
    await assert_nothing_stored(store)


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b'{"resourceType":"Slot","comment":"\xff\xfe"}', "invalid UTF-8"),
        (b'{"resourceType":"Slot","comment":"\\ud800"}', "lone surrogate"),
        (b'\xef\xbb\xbf{"resourceType":"Slot"}', "byte order mark"),
        (b'{"resourceType":"Slot","extension":[{"url":"u","valueDecimal":NaN}]}', "NaN"),
        (b'{"resourceType":"Slot","extension":[{"url":"u","valueDecimal":Infinity}]}', "Inf"),
        (b'{"resourceType":"Slot","extension":[{"url":"u","valueDecimal":1e400}]}', "overflow"),
    ],
)
async def test_bodies_that_are_not_json(
    client: AsyncClient, store: Store, raw: bytes, why: str
) -> None:
    assert_outcome(
        await client.post("/Slot", content=raw, headers={"Content-Type": FHIR}), 400, "structure"
    )
    await assert_nothing_stored(store)


@pytest.mark.parametrize(
    "number", [b"1" + b"0" * 30, b"18446744073709551615", b"-9223372036854775809", b"2147483648"]
)
async def test_huge_integers(client: AsyncClient, store: Store, number: bytes) -> None:
    body = orjson.dumps(slot(extension=[{"url": "u", "valueInteger": 7}]))
    r = await client.post(
        "/Slot", content=body.replace(b":7}", b":" + number + b"}"), headers={"Content-Type": FHIR}
    )
    assert_outcome(r, 400, "value", "Slot.extension[0].valueInteger")
    await assert_nothing_stored(store)


@pytest.mark.parametrize("resource_type", [None, 5, {"a": 1}, ["Slot"], "slot"])
async def test_resource_type_not_the_urls(
    client: AsyncClient, store: Store, resource_type: Any
) -> None:
    body = slot(id="s1", resourceType=resource_type)
    if resource_type is None:
        del body["resourceType"]
    for method, path in [("POST", "/Slot"), ("PUT", "/Slot/s1")]:
        r = await client.request(method, path, json=body, headers={"Content-Type": FHIR})
        assert_outcome(r, 400, "invalid", "resourceType")
    await assert_nothing_stored(store)


@pytest.mark.usefixtures("sched_1")
async def test_duplicate_keys_last_one_wins(client: AsyncClient) -> None:
    """RFC 8259 leaves duplicate names to the parser; orjson keeps the last, and what is
    stored and served is that parsed resource: no copy of the body keeps the first."""
    body = orjson.dumps(slot()).replace(b'"status":"free"', b'"status":"busy","status":"free"')
    r = await client.post("/Slot", content=body, headers={"Content-Type": FHIR})
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "free" and r.content.count(b'"status"') == 1


@pytest.mark.parametrize("kind", ["transaction", "batch"])
@pytest.mark.parametrize("entries", [b"5", b'"ab"', b"null", b"[1]", b'[{"request":{}}, []]'])
async def test_bundle_entries_that_are_not_objects(
    client: AsyncClient, store: Store, kind: str, entries: bytes
) -> None:
    body = b'{"resourceType":"Bundle","type":"' + kind.encode() + b'","entry":' + entries + b"}"
    r = await client.post("/", content=body, headers={"Content-Type": FHIR})
    assert_outcome(r, 400, "structure", "Bundle.entry")
    await assert_nothing_stored(store)


@pytest.mark.parametrize(
    "parameters",
    [
        {"parameter": 5},
        {"parameter": {"name": "resource"}},
        {
            "parameter": [
                {"name": "resource", "resource": slot()},
                {"name": "profile", "valueUri": ["x"]},
            ]
        },
        {
            "parameter": [
                {"name": "resource", "resource": slot()},
                {"name": "profile", "valueUri": 5},
            ]
        },
    ],
)
async def test_validate_parameters_of_the_wrong_shape(
    client: AsyncClient, parameters: dict[str, Any]
) -> None:
    body = {"resourceType": "Parameters", **parameters}
    r = await client.post("/Slot/$validate", json=body, headers={"Content-Type": FHIR})
    assert_outcome(r, 400)


@pytest.mark.parametrize("text", ["a\u0000b", "a\u0001b", "\u001f", "a\bb", "a\fb"])
async def test_control_characters_in_strings(client: AsyncClient, store: Store, text: str) -> None:
    """R4 strings hold no character below U+0020 but tab, CR and LF; PostgreSQL text holds
    no NUL at all (a 500 on PostgreSQL before)."""
    for body in (
        slot(identifier=[{"system": "urn:x", "value": text}]),
        slot(comment=text),
        {**slot(), f"a{text}": 1},
    ):
        r = await client.post("/Slot", json=body, headers={"Content-Type": FHIR})
        assert_outcome(r, 400, "value")
    await stored_s1(client)
    operations = [{"op": "add", "path": "/comment", "value": text}]
    r = await client.patch(
        "/Slot/s1", content=orjson.dumps(operations), headers={"Content-Type": PATCH_JSON}
    )
    assert_outcome(r, 400, "value")
    await unchanged_s1(client, store)


@pytest.mark.usefixtures("sched_1")
async def test_allowed_whitespace_and_escaped_backslashes(client: AsyncClient) -> None:
    text = "tab\t, CR\r, LF\n, a backslash then u0000: \\u0000, then b: \\b"
    r = await client.post("/Slot", json=slot(comment=text), headers={"Content-Type": FHIR})
    assert r.status_code == 201, r.text
    assert r.json()["comment"] == text
