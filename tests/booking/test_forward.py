"""Forwarding a booking to the slot's owner over real HTTP(S) on loopback: the owner's
confirmation, its refusal and reason, retries without a second appointment, the deadline,
a refused connection, mTLS, and the cancel by identifier."""

from __future__ import annotations

import socket
import ssl
import time
from pathlib import Path
from typing import Any

import pytest

from fhir_server.booking.forward import (
    KEY_SYSTEM,
    Limits,
    Owner,
    Owners,
    Refused,
    Unreachable,
    booking_key,
    cancel,
    create,
    for_owner,
)
from tests.booking.vendor import vendor_server
from tests.e2e.tls_support import make_certs

IDNPS = {"system": "http://interopsante.org/fhir/CodeSystem/fr-v2-0203", "code": "IDNPS"}
FAST = Limits(timeout=2.0, retries=3, deadline=6.0, backoff=0.05)
OPERATOR = {
    "url": "http://interopsante.org/fhir/StructureDefinition/FrAppointmentOperator",
    "valueReference": {
        "identifier": {
            "type": {
                "coding": [
                    {
                        "system": "http://interopsante.org/fhir/CodeSystem/fr-v2-0203",
                        "code": "IDNPS",
                    }
                ]
            },
            "system": "urn:oid:1.2.250.1.71.4.2.1",
            "value": "3456780581/11242343",
        }
    },
}


def appointment(**extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Appointment",
        "id": "local-1",
        "meta": {
            "profile": ["http://sas.fr/fhir/StructureDefinition/FrAppointmentSAS"],
            "versionId": "3",
        },
        "extension": [OPERATOR],
        "status": "booked",
        "start": "2026-06-15T10:00:00.000+02:00",
        "end": "2026-06-15T10:15:00.000+02:00",
        "slot": [{"reference": "Slot/ours-slot-1"}],
        "participant": [
            {
                "actor": {
                    "reference": "Practitioner/ours-pract",
                    "identifier": {
                        "type": {"coding": [IDNPS]},
                        "system": "urn:oid:1.2.250.1.71.4.2.1",
                        "value": "810100050075",
                    },
                },
                "status": "accepted",
            },
            {"actor": {"reference": "Patient/p1"}, "status": "accepted"},
        ],
    } | extra


def sent(remote_slot: str = "s1", key: dict[str, str] | None = None) -> dict[str, Any]:
    key = key or {"system": KEY_SYSTEM, "value": "urn:uuid:1"}
    return for_owner(appointment(), remote_slot, key)


def test_the_owner_gets_its_slot_id_one_identifier_and_no_local_ids() -> None:
    key = {"system": "urn:oid:1.2.3", "value": "k-1"}
    out = for_owner(appointment(), "their-slot", key)
    assert out["slot"] == [{"reference": "Slot/their-slot"}]
    assert out["identifier"] == [key]
    assert "id" not in out and out["meta"] == {"profile": appointment()["meta"]["profile"]}
    actors = [p.get("actor") for p in out["participant"]]
    assert actors == [{"identifier": appointment()["participant"][0]["actor"]["identifier"]}, None]
    assert appointment()["slot"] == [{"reference": "Slot/ours-slot-1"}]  # the input untouched


def test_the_booking_key_is_the_client_s_identifier_else_a_new_uuid() -> None:
    mine = {"system": "urn:oid:1.2.3", "value": "abc"}
    assert booking_key(appointment(identifier=[mine])) == mine
    one, two = booking_key(appointment()), booking_key(appointment())
    assert one["system"] == KEY_SYSTEM and one["value"].startswith("urn:uuid:")
    assert one != two


def test_owners_know_remote_slots_by_their_identifier_system() -> None:
    owner = Owner("v", "http://127.0.0.1:1")
    owners = Owners({"urn:sas-fhir-server:v:slot": owner})
    remote = {"identifier": [{"system": "urn:sas-fhir-server:v:slot", "value": "s9"}]}
    assert owners.of_slot(remote) == (owner, "s9")
    assert owners.of_slot({"identifier": [{"system": "urn:x", "value": "s9"}]}) is None
    assert owners.of_slot({}) is None


async def test_the_owner_confirms() -> None:
    with vendor_server() as vendor:
        owner = Owner("v", vendor.base)
        key = {"system": KEY_SYSTEM, "value": "urn:uuid:a"}
        done = await create(owner, sent(key=key), key, FAST)
        assert done.status == 201 and done.attempts == 1
        assert done.remote_id == "rdv-1" and done.appointment["status"] == "booked"
        headers = vendor.requests[0][2]
        assert headers["If-None-Exist"] == f"identifier={KEY_SYSTEM}|urn:uuid:a"
        assert vendor.taken == {"s1": f"{KEY_SYSTEM}|urn:uuid:a"}


async def test_the_owner_refuses_with_its_reason() -> None:
    with vendor_server() as vendor:
        owner = Owner("v", vendor.base)
        vendor.taken["s1"] = "someone else"
        key = {"system": KEY_SYSTEM, "value": "urn:uuid:b"}
        with pytest.raises(Refused) as caught:
            await create(owner, sent(key=key), key, FAST)
        assert caught.value.status == 409 and caught.value.attempts == 1
        assert "le créneau s1 est déjà réservé" in caught.value.reason
        assert vendor.count("POST") == 1 and vendor.created == 0


@pytest.mark.parametrize("status", [400, 403, 404, 422])
async def test_other_refusals_are_not_retried(status: int) -> None:
    with vendor_server() as vendor:
        vendor.script = [status]
        key = {"system": KEY_SYSTEM, "value": "urn:uuid:c"}
        with pytest.raises(Refused) as caught:
            await create(Owner("v", vendor.base), sent(key=key), key, FAST)
        assert caught.value.status == status and f"HTTP {status}" in caught.value.reason
        assert vendor.count("POST") == 1


@pytest.mark.parametrize("script", [[500, 500], [503, 408], [429, 502]])
async def test_transient_failures_are_retried_and_book_once(script: list[int | str]) -> None:
    with vendor_server() as vendor:
        vendor.script = list(script)
        key = {"system": KEY_SYSTEM, "value": "urn:uuid:d"}
        done = await create(Owner("v", vendor.base), sent(key=key), key, FAST)
        assert done.status == 201 and done.attempts == 3
        assert vendor.count("POST") == 3 and vendor.created == 1


async def test_a_lost_answer_is_retried_without_a_second_appointment() -> None:
    """The owner books, but its answer comes after our attempt's timeout: the retry carries
    the same identifier and gets the first appointment back (200), never a second one."""
    with vendor_server() as vendor:
        vendor.script, vendor.delay = ["slow"], 3.0
        key = {"system": KEY_SYSTEM, "value": "urn:uuid:e"}
        limits = Limits(timeout=0.5, retries=3, deadline=6.0, backoff=0.05)
        done = await create(Owner("v", vendor.base), sent(key=key), key, limits)
        assert done.status == 200 and done.attempts == 2 and done.remote_id == "rdv-1"
        assert vendor.created == 1


async def test_a_connection_lost_mid_answer_is_retried_without_a_second_appointment() -> None:
    with vendor_server() as vendor:
        vendor.script = ["drop"]
        key = {"system": KEY_SYSTEM, "value": "urn:uuid:drop"}
        done = await create(Owner("v", vendor.base), sent(key=key), key, FAST)
        assert done.status == 200 and done.attempts == 2 and vendor.created == 1


async def test_answers_lost_until_the_end_leave_the_outcome_uncertain() -> None:
    with vendor_server() as vendor:
        vendor.script = ["drop"] * 10
        key = {"system": KEY_SYSTEM, "value": "urn:uuid:lost"}
        limits = Limits(timeout=2.0, retries=2, deadline=10.0, backoff=0.01)
        with pytest.raises(Unreachable) as caught:
            await create(Owner("v", vendor.base), sent(key=key), key, limits)
        assert caught.value.uncertain and caught.value.attempts == 3
        assert vendor.created == 1  # booked by the first attempt: hence "uncertain"


async def test_retries_stop_at_their_count() -> None:
    with vendor_server() as vendor:
        vendor.script = [500] * 10
        key = {"system": KEY_SYSTEM, "value": "urn:uuid:f"}
        limits = Limits(timeout=2.0, retries=2, deadline=30.0, backoff=0.01)
        with pytest.raises(Unreachable) as caught:
            await create(Owner("v", vendor.base), sent(key=key), key, limits)
        assert caught.value.attempts == 3 and "HTTP 500" in caught.value.reason
        assert not caught.value.uncertain and vendor.count("POST") == 3 and vendor.created == 0


async def test_a_hanging_owner_is_given_up_at_the_deadline() -> None:
    with vendor_server() as vendor:
        vendor.script = ["hang"] * 10
        key = {"system": KEY_SYSTEM, "value": "urn:uuid:g"}
        limits = Limits(timeout=0.4, retries=10, deadline=1.0, backoff=0.05)
        began = time.monotonic()
        with pytest.raises(Unreachable) as caught:
            await create(Owner("v", vendor.base), sent(key=key), key, limits)
        assert caught.value.uncertain and "timeout" in caught.value.reason
        assert 2 <= caught.value.attempts < 10  # the deadline, not the count, stopped it
        assert time.monotonic() - began < 10  # bounded (loose: a shared machine)
        assert vendor.created == 0


async def test_an_owner_refusing_connections() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    key = {"system": KEY_SYSTEM, "value": "urn:uuid:h"}
    limits = Limits(timeout=1.0, retries=2, deadline=5.0, backoff=0.01)
    with pytest.raises(Unreachable) as caught:
        await create(Owner("v", f"http://127.0.0.1:{port}"), sent(key=key), key, limits)
    assert caught.value.attempts == 3 and "Connect" in caught.value.reason
    assert not caught.value.uncertain


async def test_cancel_is_a_put_by_identifier() -> None:
    with vendor_server() as vendor:
        owner = Owner("v", vendor.base)
        key = {"system": "urn:oid:1.2.3", "value": "k|with space"}
        await create(owner, sent(key=key), key, FAST)
        done = await cancel(owner, sent(key=key) | {"status": "cancelled"}, key, FAST)
        assert done.appointment["status"] == "cancelled" and vendor.taken == {}
        method, path, _ = vendor.requests[-1]
        assert method == "PUT" and path.startswith("/Appointment?identifier=urn:oid:1.2.3%7Ck")


async def test_mtls_owner(tmp_path: Path) -> None:
    certs = make_certs(tmp_path / "certs")
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=certs.ca)
    tls.load_cert_chain(certs.server.cert, certs.server.key)
    tls.verify_mode = ssl.CERT_REQUIRED
    limits = Limits(timeout=2.0, retries=0, deadline=4.0)
    with vendor_server(tls) as vendor:
        pair = certs.clients["valid"]
        good = Owner("v", vendor.base, cert=pair.cert, key=pair.key, ca=certs.ca)
        key = {"system": KEY_SYSTEM, "value": "urn:uuid:i"}
        assert (await create(good, sent(key=key), key, limits)).status == 201
        other = certs.clients["self_signed"]
        wrong = Owner("v", vendor.base, cert=other.cert, key=other.key, ca=certs.ca)
        key2 = {"system": KEY_SYSTEM, "value": "urn:uuid:j"}
        with pytest.raises(Unreachable):
            await create(wrong, sent("s2", key2), key2, limits)
        without = Owner("v", vendor.base, ca=certs.ca)
        with pytest.raises(Unreachable):
            await create(without, sent("s3", key2), key2, limits)
        assert vendor.created == 1
