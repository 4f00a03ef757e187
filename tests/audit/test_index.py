"""The audit trail's own index rows are exactly those of the generic indexer."""

from __future__ import annotations

import itertools
import time
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from fhir_server.audit.events import audit_event
from fhir_server.audit.index import audit_index, indexer_for
from fhir_server.audit.record import Access
from fhir_server.core.caller import Caller
from fhir_server.search.indexing.indexer import index_resource
from fhir_server.search.registry.packages import registry_for
from fhir_server.search.registry.parameters import Registry
from tests.api.conftest import PACKAGES

CALLERS = [
    None,
    Caller(role="admin"),
    Caller(role="platform", client_id="sas-platform"),
    Caller(role="regulator", client_id="logiciel", user_id="810000000001"),
    Caller(role="regulator", user_id="810000000002"),
]
REQUESTS = [
    ("GET", "/Slot/s1", b"", 200, None, None),
    ("GET", "/Slot/s1/_history/2", b"", 404, None, None),
    ("GET", "/Slot", b"status=free&start=ge2026-01-01", 200, None, None),
    ("POST", "/Slot", b"", 201, "http://x/Slot/n1/_history/1", None),
    ("PUT", "/Schedule/s", b"", 200, None, 'W/"3"'),
    ("PUT", "/Practitioner", b"identifier=urn:oid:1.2.250.1.71.4.2.1%7C8100", 201, None, None),
    ("DELETE", "/Slot/s1", b"", 204, None, None),
    ("POST", "/", b"", 200, None, None),
    ("POST", "/Slot/$validate", b"", 200, None, None),
    ("GET", "/metadata", b"", 200, None, None),
    ("GET", "/auth/callback", b"code=x&state=y", 303, None, None),
    ("GET", "/_history", b"_count=3", 503, None, None),
]
CLIENTS = [None, "127.0.0.1", "2001:db8::1"]


@pytest.fixture(scope="module")
def registry() -> Registry:
    return registry_for(PACKAGES)


def canonical(rows: dict[str, list[dict[str, Any]]]) -> dict[str, list[tuple[Any, ...]]]:
    return {
        kind: sorted(tuple(sorted(r.items(), key=str)) for r in kind_rows)
        for kind, kind_rows in rows.items()
        if kind_rows
    }


def test_the_same_rows_as_the_generic_indexer(registry: Registry) -> None:
    assert indexer_for(registry) is audit_index  # R4's parameters: the fast path applies
    started = time.time()
    for caller, request, client in itertools.product(CALLERS, REQUESTS, CLIENTS):
        method, path, query, status, location, etag = request
        written = (b"Slot/a/_history/1", b"Schedule/b/_history/2") if path == "/" else ()
        access = Access(
            started, method, path, query, status, caller, client, location, etag, b"", written
        )
        event = audit_event(access, "Site Ardèche", ZoneInfo("Europe/Paris"))
        assert canonical(audit_index(event)) == canonical(index_resource(registry, event)), event
