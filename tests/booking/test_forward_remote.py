"""The booking path's side of forwarding (``RemoteBooking``) against a real loopback
vendor: which slots are remote (from the pull sources file), and what our client gets for
each answer of the owner."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import orjson
import pytest

from fhir_server.booking.forward import KEY_SYSTEM, Limits
from fhir_server.booking.remote import RemoteBooking
from fhir_server.core.errors import FhirError
from fhir_server.ingest.pull.config import PullConfigError, load_sources
from fhir_server.ingest.pull.owners import remote_owners
from tests.booking.test_forward import appointment
from tests.booking.vendor import vendor_server

LIMITS = Limits(timeout=1.0, retries=2, deadline=3.0, backoff=0.02)


def sources_file(tmp_path: Path, entries: list[dict[str, Any]]) -> Path:
    path = tmp_path / "sources.json"
    path.write_bytes(orjson.dumps({"sources": entries}))
    return path


def sas(name: str, url: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "url": url, "format": "sas-fhir", "rpps": ["10000000015"]} | extra


def remote(tmp_path: Path, url: str, limits: Limits = LIMITS) -> RemoteBooking:
    path = sources_file(
        tmp_path,
        [
            sas("agenda", url, vendor="agenda"),
            {"name": "cal", "url": "http://127.0.0.1:9/x.ics", "format": "ical", "vendor": "c"},
            sas("off", "http://127.0.0.1:9/fhir", vendor="off", enabled=False),
        ],
    )
    return RemoteBooking(remote_owners(load_sources(path), limits))


def slot(vendor: str = "agenda", rid: str = "s1") -> dict[str, Any]:
    return {
        "resourceType": "Slot",
        "id": f"{vendor}-slot-{rid}",
        "identifier": [{"system": f"urn:sas-fhir-server:{vendor}:slot", "value": rid}],
        "status": "free",
    }


def test_only_enabled_sas_fhir_sources_own_their_slots(tmp_path: Path) -> None:
    booking = remote(tmp_path, "http://127.0.0.1:9/fhir")
    found = booking.owner_of(slot())
    assert found is not None and found[0].name == "agenda" and found[1] == "s1"
    assert booking.owner_of(slot("c")) is None  # a feed: no booking API
    assert booking.owner_of(slot("off")) is None  # disabled: booked locally
    assert booking.owner_of({"resourceType": "Slot", "id": "ours"}) is None


def test_one_vendor_at_two_addresses_is_refused(tmp_path: Path) -> None:
    path = sources_file(
        tmp_path,
        [sas("a", "http://127.0.0.1:9/one"), sas("b", "http://127.0.0.1:9/two")],
    )
    with pytest.raises(PullConfigError, match="sources a and b: sas-fhir sources of one vendor"):
        load_sources(path)
    same = sources_file(
        tmp_path, [sas("a", "http://127.0.0.1:9/one"), sas("b", "http://127.0.0.1:9/one/")]
    )
    assert len(load_sources(same)) == 2  # one vendor's API split by practitioners: fine


async def test_a_local_slot_is_not_forwarded(tmp_path: Path) -> None:
    booking = remote(tmp_path, "http://127.0.0.1:9/fhir")
    assert await booking.book({"resourceType": "Slot", "id": "x"}, appointment()) is None
    assert await booking.cancel({"resourceType": "Slot", "id": "x"}, appointment()) is False


async def test_confirmed_returns_what_to_store_with_the_owner_s_key(tmp_path: Path) -> None:
    with vendor_server() as vendor:
        booking = remote(tmp_path, vendor.base)
        mine = {"system": "urn:oid:1.2.3", "value": "k1"}
        local = await booking.book(slot(), appointment(identifier=[mine]))
        assert local is not None and local["identifier"] == [mine]
        assert local["slot"] == appointment()["slot"]  # our slot, locally
        assert vendor.appointments["urn:oid:1.2.3|k1"]["slot"] == [{"reference": "Slot/s1"}]
        generated = await booking.book(slot(rid="s2"), appointment())
        assert generated is not None and generated["identifier"][0]["system"] == KEY_SYSTEM
        assert await booking.cancel(slot(), local) is True
        assert vendor.appointments["urn:oid:1.2.3|k1"]["status"] == "cancelled"
        assert list(vendor.taken) == ["s2"]


async def test_a_refusal_is_our_409_with_the_owner_s_reason(tmp_path: Path) -> None:
    with vendor_server() as vendor:
        vendor.taken["s1"] = "other"
        with pytest.raises(FhirError) as caught:
            await remote(tmp_path, vendor.base).book(slot(), appointment())
        assert caught.value.status == 409
        assert "owner (agenda) refused the booking: HTTP 409: le créneau s1" in str(caught.value)


async def test_an_owner_that_hangs_is_504(tmp_path: Path) -> None:
    with vendor_server() as vendor:
        vendor.script = ["hang"] * 5
        with pytest.raises(FhirError) as caught:
            await remote(tmp_path, vendor.base).book(slot(), appointment())
        assert caught.value.status == 504 and caught.value.issues[0].code == "timeout"
        assert "nothing was recorded" in str(caught.value) and vendor.created == 0


async def test_an_owner_failing_or_refusing_connections_is_503(tmp_path: Path) -> None:
    with vendor_server() as vendor:
        vendor.script = [500] * 5
        with pytest.raises(FhirError) as caught:
            await remote(tmp_path, vendor.base).book(slot(), appointment())
        assert caught.value.status == 503 and "HTTP 500" in str(caught.value)
        assert caught.value.headers["Retry-After"] == "30"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(FhirError) as caught:
        await remote(tmp_path, f"http://127.0.0.1:{port}/fhir").book(slot(), appointment())
    assert caught.value.status == 503 and "3 attempt(s)" in str(caught.value)


async def test_a_cancel_the_owner_refuses_is_409(tmp_path: Path) -> None:
    with vendor_server() as vendor:
        mine = {"system": "urn:oid:1.2.3", "value": "unknown-there"}
        with pytest.raises(FhirError) as caught:
            await remote(tmp_path, vendor.base).cancel(slot(), appointment(identifier=[mine]))
        assert caught.value.status == 409 and "refused the cancel: HTTP 404" in str(caught.value)


async def test_undo_cancels_at_the_owner_and_never_raises(tmp_path: Path) -> None:
    with vendor_server() as vendor:
        booking = remote(tmp_path, vendor.base)
        local = await booking.book(slot(), appointment())
        assert local is not None and vendor.taken
        await booking.undo(slot(), local)
        assert vendor.taken == {}
        vendor.script = [500] * 5
        await booking.undo(slot(), local)  # logged, not raised
