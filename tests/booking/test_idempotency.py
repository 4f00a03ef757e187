"""Idempotent retries on both engines: ``Idempotency-Key`` and conditional create give one
appointment, sequentially and under concurrency."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.api.test_policy import Api
from tests.booking.conftest import appointments, at, booking, put_slot, send, slot_status


async def post(api: Api, payload: Any, key: str | None, who: str = "regulator") -> Any:
    headers = {"Idempotency-Key": key} if key is not None else {}
    return await send(api, who, "POST", "/Appointment", payload, **headers)


async def test_a_retry_replays_the_first_result(api: Api) -> None:
    slot = await put_slot(api, "s1", at(48))
    first = await post(api, booking(slot), "k-1")
    assert first.status_code == 201, first.text
    assert "Idempotent-Replayed" not in first.headers
    again = await post(api, booking(slot), "k-1")
    assert again.status_code == 201, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == first.headers["Location"]
    assert again.content == first.content
    assert len(await appointments(api)) == 1
    assert await slot_status(api, "s1") == ("busy", "2")


async def test_the_same_key_for_another_request_is_unprocessable(api: Api) -> None:
    a = await put_slot(api, "a", at(48))
    b = await put_slot(api, "b", at(72))
    assert (await post(api, booking(a), "k-1")).status_code == 201
    r = await post(api, booking(b), "k-1")
    assert r.status_code == 422, r.text
    assert "Idempotency-Key" in r.json()["issue"][0]["diagnostics"]
    assert await slot_status(api, "b") == ("free", "1")
    assert len(await appointments(api)) == 1


async def test_keys_are_per_client(api: Api) -> None:
    a = await put_slot(api, "a", at(48))
    b = await put_slot(api, "b", at(72))
    assert (await post(api, booking(a), "k-1")).status_code == 201
    r = await post(api, booking(b), "k-1", who="platform")
    assert r.status_code == 201, r.text
    assert "Idempotent-Replayed" not in r.headers
    assert len(await appointments(api)) == 2


async def test_a_failed_request_records_nothing(api: Api) -> None:
    slot = await put_slot(api, "s1", at(48), status="busy")
    assert (await post(api, booking(slot), "k-1")).status_code == 409
    await put_slot(api, "s1", at(48))  # freed meanwhile: the retry runs again
    r = await post(api, booking(slot), "k-1")
    assert r.status_code == 201, r.text
    assert "Idempotent-Replayed" not in r.headers


async def test_an_unusable_key_is_a_bad_request(api: Api) -> None:
    slot = await put_slot(api, "s1", at(48))
    for key in ("x" * 256, "é".encode("latin-1"), b""):
        headers = {**api.headers["regulator"], "Idempotency-Key": key}
        r = await api.client.post("/Appointment", json=booking(slot), headers=headers)
        assert r.status_code == 400, r.text
        assert "Idempotency-Key" in r.json()["issue"][0]["diagnostics"]
    assert await appointments(api) == []


async def test_concurrent_retries_make_one_appointment(api: Api) -> None:
    slot = await put_slot(api, "s1", at(48))
    results = await asyncio.gather(*(post(api, booking(slot), "k-1") for _ in range(12)))
    assert [r.status_code for r in results] == [201] * 12, [r.text for r in results]
    replayed = [r.headers.get("Idempotent-Replayed") for r in results]
    assert replayed.count(None) == 1 and replayed.count("true") == 11
    assert len({r.headers["Location"] for r in results}) == 1
    assert len(await appointments(api)) == 1


async def test_concurrent_conditional_creates_make_one_appointment(api: Api) -> None:
    slot = await put_slot(api, "s1", at(48))
    ident = {"system": "urn:oid:1.2.250.1.213.1.4.10", "value": "apt-1"}
    payload = booking(slot, identifier=[ident])
    header = {"If-None-Exist": f"identifier={ident['system']}|{ident['value']}"}
    results = await asyncio.gather(
        *(send(api, "regulator", "POST", "/Appointment", payload, **header) for _ in range(12))
    )
    codes = sorted(r.status_code for r in results)
    assert codes == [200] * 11 + [201], [r.text for r in results]
    assert len(await appointments(api)) == 1
    assert await slot_status(api, "s1") == ("busy", "2")
