"""Access records -> AuditEvents (pure): the interaction, action, outcome, agent, entity."""

from __future__ import annotations

import base64
from zoneinfo import ZoneInfo

import pytest

from fhir_server.audit.events import (
    IDNPS,
    INTERACTION,
    audit_event,
    classify,
    recordable_query,
)
from fhir_server.audit.record import Access
from fhir_server.core.caller import Caller
from fhir_server.validation.structure import structure_issues

PARIS = ZoneInfo("Europe/Paris")
REGULATOR = Caller(role="regulator", client_id="sas-fhir-server", user_id="810000000001")
PLATFORM = Caller(role="platform", client_id="sas-platform")


def access(method: str = "GET", path: str = "/Slot/s1", **fields: object) -> Access:
    values: dict[str, object] = {
        "started": 1_780_000_000.25,
        "method": method,
        "path": path,
        "query": b"",
        "status": 200,
        "caller": PLATFORM,
        "client": "192.0.2.7",
        "location": None,
        "body": b"",
    }
    values.update(fields)
    return Access(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("method", "path", "code", "reference"),
    [
        ("GET", "/metadata", "capabilities", None),
        ("GET", "/Slot/s1", "read", "Slot/s1"),
        ("GET", "/Slot/s1/_history/2", "vread", "Slot/s1/_history/2"),
        ("GET", "/Slot", "search-type", None),
        ("POST", "/Slot/_search", "search-type", None),
        ("POST", "/Slot", "create", None),
        ("PUT", "/Slot/s1", "update", "Slot/s1"),
        ("PUT", "/Slot", "update", None),
        ("PATCH", "/Slot/s1", "patch", "Slot/s1"),
        ("DELETE", "/Slot/s1", "delete", "Slot/s1"),
        ("DELETE", "/Slot", "delete", None),
        ("GET", "/_history", "history-system", None),
        ("GET", "/Slot/_history", "history-type", None),
        ("GET", "/Slot/s1/_history", "history-instance", "Slot/s1"),
        ("POST", "/", "transaction", None),
        ("POST", "/Slot/$validate", "operation", None),
        ("POST", "/Slot/s1/$validate", "operation", "Slot/s1"),
        ("GET", "/auth/login", None, None),
    ],
)
def test_classify(method: str, path: str, code: str | None, reference: str | None) -> None:
    found = classify(method, path)
    assert (found.code, found.reference) == (code, reference)


@pytest.mark.parametrize(
    ("method", "path", "status", "action", "subtype"),
    [
        ("GET", "/Slot/s1", 200, "R", "read"),
        ("POST", "/Slot", 201, "C", "create"),
        ("PUT", "/Slot/s1", 200, "U", "update"),
        ("PATCH", "/Slot/s1", 200, "U", "patch"),
        ("DELETE", "/Slot/s1", 200, "D", "delete"),
        ("POST", "/", 200, "E", "transaction"),
        ("POST", "/Slot/$validate", 200, "E", "operation"),
    ],
)
def test_every_event_is_valid_r4_with_type_subtype_and_action(
    method: str, path: str, status: int, action: str, subtype: str
) -> None:
    event = audit_event(access(method, path, status=status), "site-a", PARIS)
    assert structure_issues(event) == []
    assert event["type"]["code"] == "rest"
    assert event["subtype"] == [{"system": INTERACTION, "code": subtype}]
    assert event["action"] == action
    assert event["recorded"] == "2026-05-28T22:26:40.250+02:00"
    assert event["outcome"] == "0" and "outcomeDesc" not in event
    assert event["source"]["site"] == "site-a"


def test_a_batch_is_told_from_a_transaction_by_its_answer() -> None:
    body = b'{"resourceType":"Bundle","type":"batch-response","entry":['
    event = audit_event(access("POST", "/", body=body), "s", PARIS)
    assert event["subtype"][0]["code"] == "batch"
    assert event["entity"][0]["type"]["code"] == "Bundle"


def test_a_person_is_recorded_by_national_id_and_software() -> None:
    event = audit_event(access(caller=REGULATOR), "s", PARIS)
    (agent,) = event["agent"]
    assert agent["who"] == {"identifier": {"system": IDNPS, "value": "810000000001"}}
    assert agent["altId"] == "810000000001"
    assert agent["name"] == "sas-fhir-server"
    assert agent["role"][0]["coding"][0]["code"] == "regulator"
    assert agent["type"]["coding"][0]["code"] == "humanuser"
    assert agent["requestor"] is True
    assert agent["network"] == {"address": "192.0.2.7", "type": "2"}
    assert structure_issues(event) == []


def test_a_system_is_recorded_by_client_id() -> None:
    (agent,) = audit_event(access(), "s", PARIS)["agent"]
    assert agent["name"] == "sas-platform" and "who" not in agent and "type" not in agent
    assert agent["role"][0]["coding"][0]["code"] == "platform"


def test_an_unidentified_caller_still_has_an_agent() -> None:
    event = audit_event(access(caller=None, status=401), "s", PARIS)
    assert event["agent"][0]["name"] == "unidentified"
    assert "role" not in event["agent"][0]
    assert structure_issues(event) == []


@pytest.mark.parametrize(("status", "outcome"), [(400, "4"), (401, "4"), (404, "4"), (503, "8")])
def test_failures_carry_the_outcome_and_its_diagnostic(status: int, outcome: str) -> None:
    body = (
        b'{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invalid",'
        b'"diagnostics":"it went wrong"}]}'
    )
    event = audit_event(access(status=status, body=body), "s", PARIS)
    assert event["outcome"] == outcome
    assert event["outcomeDesc"] == "it went wrong"


def test_a_failure_without_an_outcome_body_is_described_by_its_status() -> None:
    event = audit_event(access(status=500, body=b"Internal Server Error"), "s", PARIS)
    assert (event["outcome"], event["outcomeDesc"]) == ("8", "HTTP 500")


def test_a_search_records_its_query() -> None:
    query = b"identifier=urn:oid:1.2.250.1.71.4.2.1%7C810001234567&status=free"
    event = audit_event(access("GET", "/Slot", query=query), "s", PARIS)
    (entity,) = event["entity"]
    assert base64.b64decode(entity["query"]) == query
    assert entity["description"] == query.decode()
    assert entity["type"]["code"] == "Slot" and "what" not in entity


def test_a_create_records_the_version_it_made() -> None:
    location = "https://fhir.example/base/Slot/new-1/_history/1"
    event = audit_event(access("POST", "/Slot", status=201, location=location), "s", PARIS)
    assert event["entity"][0]["what"] == {"reference": "Slot/new-1/_history/1"}


def test_credentials_in_the_query_are_never_recorded() -> None:
    assert recordable_query(b"_count=3&access_token=abc.def") == "_count=3"
    event = audit_event(access("GET", "/auth/callback", query=b"code=SECRET&state=XYZ"), "s", PARIS)
    assert b"SECRET" not in repr(event).encode() and "XYZ" not in repr(event)
    assert event["type"]["code"] == "110114"  # a login page: user authentication
    assert structure_issues(event) == []


def test_a_request_that_is_no_fhir_interaction_is_still_a_rest_event() -> None:
    event = audit_event(access("HEAD", "/Slot/s1", status=405), "s", PARIS)
    assert event["type"]["code"] == "rest" and "subtype" not in event
    assert (event["action"], event["outcome"]) == ("R", "4")
    assert structure_issues(event) == []


def test_a_transaction_names_each_resource_it_wrote() -> None:
    written = (b"Slot/a/_history/1", b"https://fhir.example/Schedule/b/_history/3")
    body = b'{"resourceType":"Bundle","type":"transaction-response","entry":['
    event = audit_event(access("POST", "/", body=body, written=written), "s", PARIS)
    assert event["subtype"][0]["code"] == "transaction"
    assert [e.get("what", {}).get("reference") for e in event["entity"]] == [
        None,
        "Slot/a/_history/1",
        "Schedule/b/_history/3",
    ]
    assert [e["type"]["code"] for e in event["entity"]] == ["Bundle", "Slot", "Schedule"]
    assert structure_issues(event) == []
