"""The audit trail over the API, on both engines: one AuditEvent per request, of the right
interaction, caller and outcome (refusals included), searchable by admins."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
from fastapi import FastAPI

from auth import devcerts
from fhir_server.app import create_app
from fhir_server.audit.events import IDNPS
from fhir_server.audit.record import Access
from fhir_server.core.caller import Caller
from fhir_server.settings import ClientCertificate, Settings
from fhir_server.storage.port import Store
from tests.api.conftest import BASE, FHIR, PACKAGES, schedule, slot

JSON = {"Content-Type": FHIR}
CERT_HEADER = "X-SSL-Client-Cert"


async def settled(app: FastAPI) -> None:
    async with asyncio.timeout(10):
        await app.state.audit.settled()


async def audit_events(store: Store) -> list[dict[str, Any]]:
    page = await store.history(
        res_type="AuditEvent", res_id=None, since=None, at=None, count=1000, offset=0
    )
    events = [orjson.loads(s.content) for s in page.entries]
    return sorted(events, key=lambda e: str(e["recorded"]))


@pytest.fixture
async def app(store: Store) -> AsyncIterator[FastAPI]:
    settings = Settings(
        package_path=PACKAGES, validate_profiles=False, audit_interval_ms=10, auth="none"
    )
    application = create_app(settings, store=store)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def api(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5000))
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
        yield c


def summary(event: dict[str, Any]) -> tuple[str, str, str, str | None]:
    entity = (event.get("entity") or [{}])[0]
    what = entity.get("what", {}).get("reference") or entity.get("description")
    return event["subtype"][0]["code"], event["action"], event["outcome"], what


async def test_every_interaction_leaves_one_event(
    app: FastAPI, api: httpx.AsyncClient, store: Store
) -> None:
    assert (await api.put("/Schedule/sched-1", json=schedule(), headers=JSON)).status_code == 201
    created = await api.post("/Slot", json=slot(), headers=JSON)
    assert created.status_code == 201
    slot_id = created.json()["id"]
    patch = [{"op": "replace", "path": "/status", "value": "busy"}]
    requests = [
        api.get(f"/Slot/{slot_id}"),
        api.get(f"/Slot/{slot_id}/_history/1"),
        api.get("/Slot", params={"status": "free"}),
        api.patch(
            f"/Slot/{slot_id}", json=patch, headers={"Content-Type": "application/json-patch+json"}
        ),
        api.get(f"/Slot/{slot_id}/_history"),
        api.get("/Slot/_history"),
        api.get("/_history"),
        api.post("/Slot/$validate", json=slot(), headers=JSON),
        api.get("/metadata"),
        api.post(
            "/",
            json={"resourceType": "Bundle", "type": "batch", "entry": []},
            headers=JSON,
        ),
        api.delete(f"/Slot/{slot_id}"),
    ]
    for request in requests:  # one after the other: their events' order is known
        answer = await request
        assert answer.status_code < 300, answer.text
    await settled(app)
    events = await audit_events(store)
    assert [summary(e) for e in events] == [
        ("update", "U", "0", "Schedule/sched-1/_history/1"),
        ("create", "C", "0", f"Slot/{slot_id}/_history/1"),
        ("read", "R", "0", f"Slot/{slot_id}"),
        ("vread", "R", "0", f"Slot/{slot_id}/_history/1"),
        ("search-type", "R", "0", "status=free"),
        ("patch", "U", "0", f"Slot/{slot_id}/_history/2"),
        ("history-instance", "R", "0", f"Slot/{slot_id}"),
        ("history-type", "R", "0", None),
        ("history-system", "R", "0", None),
        ("operation", "E", "0", None),
        ("capabilities", "R", "0", None),
        ("batch", "E", "0", None),
        ("delete", "D", "0", f"Slot/{slot_id}"),
    ]
    for event in events:  # FHIR_AUTH=none: the anonymous client of FHIR_DEFAULT_ROLE
        (agent,) = event["agent"]
        assert agent["name"] == "anonymous"
        assert agent["role"][0]["coding"][0]["code"] == "admin"
        assert agent["network"]["address"] == "127.0.0.1"
        assert event["source"]["site"] == "sas-fhir-server"


async def test_refused_requests_leave_a_failure_event(
    app: FastAPI, api: httpx.AsyncClient, store: Store
) -> None:
    assert (await api.get("/Slot/nope")).status_code == 404
    bad = await api.post("/Slot", content=b'{"resourceType": "Nope"}', headers=JSON)
    assert bad.status_code == 400
    await settled(app)
    events = await audit_events(store)
    assert [(e["subtype"][0]["code"], e["outcome"]) for e in events] == [
        ("read", "4"),
        ("create", "4"),
    ]
    assert "Slot/nope" in events[0]["outcomeDesc"]
    assert events[1]["outcomeDesc"] == bad.json()["issue"][0]["diagnostics"]


async def test_a_transaction_records_each_resource_it_wrote(
    app: FastAPI, api: httpx.AsyncClient, store: Store
) -> None:
    entries = [
        {
            "resource": schedule(res_id),
            "request": {"method": "PUT", "url": f"Schedule/{res_id}"},
        }
        for res_id in ("t-1", "t-2")
    ]
    body = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    answer = await api.post("/", json=body, headers=JSON)
    assert answer.status_code == 200, answer.text
    await settled(app)
    (event,) = await audit_events(store)
    assert (event["subtype"][0]["code"], event["action"]) == ("transaction", "E")
    assert [e.get("what", {}).get("reference") for e in event["entity"]] == [
        None,
        "Schedule/t-1/_history/1",
        "Schedule/t-2/_history/1",
    ]


async def test_a_search_sent_as_a_form_records_its_parameters(
    app: FastAPI, api: httpx.AsyncClient, store: Store
) -> None:
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    answer = await api.post("/Slot/_search?_count=5", content=b"status=free", headers=form)
    assert answer.status_code == 200, answer.text
    await settled(app)
    (event,) = await audit_events(store)
    assert summary(event) == ("search-type", "R", "0", "_count=5&status=free")


async def test_the_writers_own_inserts_are_not_audited(
    app: FastAPI, api: httpx.AsyncClient, store: Store
) -> None:
    for _ in range(3):
        assert (await api.get("/AuditEvent")).status_code == 200
        await settled(app)
    assert len(await audit_events(store)) == 3  # the three reads, nothing for the writes


def person_access(user_id: str, status: int, path: str) -> Access:
    caller = Caller(role="regulator", client_id="logiciel-regulation", user_id=user_id)
    return Access(time.time(), "GET", path, b"", status, caller, "192.0.2.10", None)


async def test_admins_search_the_trail(app: FastAPI, api: httpx.AsyncClient) -> None:
    writer = app.state.audit
    await writer.submit(person_access("810000000001", 200, "/Slot/s1"))
    await writer.submit(person_access("810000000002", 403, "/Slot/s2"))
    await settled(app)

    async def found(**params: str) -> list[dict[str, Any]]:
        answer = await api.get("/AuditEvent", params=params)
        assert answer.status_code == 200, answer.text
        return [e["resource"] for e in answer.json().get("entry", [])]

    (one,) = await found(altid="810000000001")
    assert one["agent"][0]["who"]["identifier"] == {"system": IDNPS, "value": "810000000001"}
    (refused,) = await found(outcome="4")
    assert refused["entity"][0]["what"]["reference"] == "Slot/s2"
    assert len(await found(entity="Slot/s1")) == 1
    assert len(await found(subtype="read", address="192.0.2.10")) == 2
    assert len(await found(**{"agent-name": "logiciel-regulation", "site": "sas-fhir-server"})) == 2
    assert len(await found(date="ge2020-01-01", action="R")) >= 2
    assert await found(date="lt2020-01-01") == []


async def test_audit_off_records_nothing(store: Store) -> None:
    settings = Settings(package_path=PACKAGES, validate_profiles=False, audit=False, auth="none")
    application = create_app(settings, store=store)
    async with application.router.lifespan_context(application):
        assert application.state.audit is None
        transport = httpx.ASGITransport(app=application, client=("127.0.0.1", 5000))
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
            assert (await c.get("/Slot")).status_code == 200
    assert await audit_events(store) == []


@pytest.fixture(scope="module")
def ca() -> devcerts.Issued:
    return devcerts.new_ca()


@pytest.fixture
async def secured(store: Store) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """FHIR_AUTH=on; certificates come from a trusted proxy's header (nginx mode)."""
    settings = Settings(
        package_path=PACKAGES,
        validate_profiles=False,
        audit_interval_ms=10,
        auth="on",
        client_cert_header=CERT_HEADER,
        client_certificates=[
            ClientCertificate(
                cn="plateforme-sas", ou="SAS", client_id="sas-platform", role="platform"
            )
        ],
    )
    application = create_app(settings, store=store)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application, client=("127.0.0.1", 5000))
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
            yield application, c


def presenting(cert: devcerts.Issued) -> dict[str, str]:
    return {CERT_HEADER: quote(cert.cert_pem().decode()), "X-SSL-Client-Verify": "SUCCESS"}


async def test_authenticated_and_refused_callers_are_recorded(
    secured: tuple[FastAPI, httpx.AsyncClient], store: Store, ca: devcerts.Issued
) -> None:
    app, api = secured
    platform = devcerts.client_cert(ca, "plateforme-sas", "SAS")
    stranger = devcerts.client_cert(ca, "inconnu", "SAS")
    assert (await api.get("/Slot", headers=presenting(platform))).status_code == 200
    forbidden = await api.get("/Slot", headers=presenting(stranger))
    assert forbidden.status_code == 403
    assert (await api.get("/Slot")).status_code == 401
    await settled(app)
    events = await audit_events(store)
    assert [(e["outcome"], e["agent"][0]["name"]) for e in events] == [
        ("0", "sas-platform"),
        ("4", "unidentified"),
        ("4", "unidentified"),
    ]
    assert events[0]["agent"][0]["role"][0]["coding"][0]["code"] == "platform"
    assert events[1]["outcomeDesc"] == forbidden.json()["issue"][0]["diagnostics"]
    assert "authentication is required" in events[2]["outcomeDesc"]


async def test_no_client_writes_an_audit_event(api: httpx.AsyncClient) -> None:
    event = {
        "resourceType": "AuditEvent",
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
        },
        "recorded": "2026-12-07T10:00:00.000+01:00",
        "agent": [{"name": "forger", "requestor": True}],
        "source": {"observer": {"display": "forger"}},
    }
    answer = await api.post("/AuditEvent", json=event, headers=JSON)
    assert answer.status_code in (403, 405), answer.text
