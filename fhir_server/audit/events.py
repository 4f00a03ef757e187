"""An access record -> an R4 AuditEvent: https://hl7.org/fhir/R4/auditevent.html.

Pure: no I/O. What it records (docs/audit.md):

- ``type`` rest and ``subtype`` the FHIR interaction (``restful-interaction``: read, vread,
  search-type, create, update, patch, delete, history-*, transaction, batch, operation,
  capabilities); ``action`` C/R/U/D/E; ``recorded`` when the request arrived;
- ``outcome`` 0 (success), 4 (refused: 4xx) or 8 (server failure: 5xx), with the
  OperationOutcome's diagnostics as ``outcomeDesc``;
- one ``agent``, the requestor: a person's national id (IDNPS) as ``who.identifier`` and
  ``altId``, the calling software's client id as ``name``, the role, the client address;
- ``source``: this site (``FHIR_AUDIT_SOURCE``), a web server;
- ``entity``: the resource read or written (``Type/id``, versioned when the answer names a
  version) or, for searches and conditional interactions, the query string; a batch or
  transaction: the Bundle, then each resource its entries wrote (at most 1,000).

Never more than ids and queries: no resource content, no header, no credential. Query
parameters that carry credentials (``access_token``, an OAuth ``code``) are left out.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlencode, urlsplit
from zoneinfo import ZoneInfo

import orjson

from fhir_server.audit.record import Access
from fhir_server.core.fhirtime import format_instant

EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
DICOM = "http://dicom.nema.org/resources/ontology/DCM"
INTERACTION = "http://hl7.org/fhir/restful-interaction"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
RESOURCE_TYPES = "http://hl7.org/fhir/resource-types"
ROLE_TYPE = "http://terminology.hl7.org/CodeSystem/extra-security-role-type"
IDNPS = "urn:oid:1.2.250.1.71.4.2.1"  # national id of health professionals (RPPS, ADELI)
# The server's own roles (core/roles.py): vendor, regulator, platform, admin.
ROLE_SYSTEM = "https://github.com/sas-fhir-server/CodeSystem/role"

# Query parameters that are credentials, never recorded (a token in the URL, an OAuth
# authorization code or state on the login pages).
SECRET_PARAMS = frozenset({"access_token", "code", "state", "client_secret", "id_token"})
_DESCRIPTION_LIMIT = 1000

_ACTIONS = {
    "read": "R",
    "vread": "R",
    "search-type": "R",  # POST …/_search too
    "history-instance": "R",
    "history-type": "R",
    "history-system": "R",
    "capabilities": "R",
    "create": "C",
    "update": "U",
    "patch": "U",
    "delete": "D",
    "transaction": "E",
    "batch": "E",
    "operation": "E",
}


class Interaction(NamedTuple):
    code: str | None  # restful-interaction code; None: not a FHIR interaction (login pages)
    res_type: str | None
    reference: str | None  # Type/id[/_history/v] named by the path


def classify(method: str, path: str) -> Interaction:
    """Which FHIR interaction a request was, from its method and path (as routes.py
    declares them)."""
    parts = [p for p in path.split("/") if p]
    n = len(parts)
    if n and parts[0] == "auth":
        return Interaction(None, None, None)
    if n == 0:
        return Interaction("transaction" if method == "POST" else None, None, None)
    if n == 1 and parts[0] == "metadata":
        return Interaction("capabilities", None, None)
    if parts[0] == "_history":
        return Interaction("history-system", None, None)
    res_type = parts[0]
    if n == 1:
        code = {"GET": "search-type", "POST": "create", "PUT": "update", "DELETE": "delete"}
        return Interaction(code.get(method), res_type, None)
    if parts[-1].startswith("$"):
        return Interaction("operation", res_type, "/".join(parts[:2]) if n == 3 else None)
    if n == 2 and parts[1] == "_search":
        return Interaction("search-type", res_type, None)
    if n == 2 and parts[1] == "_history":
        return Interaction("history-type", res_type, None)
    reference = f"{res_type}/{parts[1]}"
    if n == 3 and parts[2] == "_history":
        return Interaction("history-instance", res_type, reference)
    if n == 4 and parts[2] == "_history":
        return Interaction("vread", res_type, f"{reference}/_history/{parts[3]}")
    code = {"GET": "read", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
    return Interaction(code.get(method), res_type, reference)


def _bundle_interaction(body: bytes) -> str:
    """A POST of a Bundle: its answer says whether it was a batch or a transaction."""
    return "batch" if b'"batch-response"' in body else "transaction"


def _location_reference(location: str | None) -> str | None:
    """``Type/id/_history/v`` of a Location header (absolute or relative)."""
    if not location:
        return None
    parts = [p for p in urlsplit(location).path.split("/") if p]
    if len(parts) >= 4 and parts[-2] == "_history":
        return "/".join(parts[-4:])
    if len(parts) >= 2:
        return "/".join(parts[-2:])
    return None


def _versioned(reference: str | None, etag: str | None) -> str | None:
    """``Type/id/_history/v`` from the ETag (``W/"v"``) of an update's answer."""
    if reference is None or not etag:
        return reference
    version = etag.removeprefix("W/").strip('"')
    return f"{reference}/_history/{version}" if version.isdigit() else reference


def recordable_query(query: bytes) -> str:
    """The query string without credential parameters."""
    text = query.decode("latin-1")
    if not any(name in text for name in SECRET_PARAMS):  # the usual case: nothing to parse
        return text
    pairs = parse_qsl(text, keep_blank_values=True)
    return urlencode([(k, v) for k, v in pairs if k not in SECRET_PARAMS])


def outcome_description(body: bytes) -> str | None:
    """The diagnostics of an OperationOutcome answer (what went wrong, in words)."""
    try:
        outcome = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None  # cut short (only the start is kept) or not JSON
    if not isinstance(outcome, dict) or outcome.get("resourceType") != "OperationOutcome":
        return None
    texts: list[str] = [
        issue["diagnostics"]
        for issue in outcome.get("issue") or []
        if isinstance(issue, dict) and isinstance(issue.get("diagnostics"), str)
    ]
    return "; ".join(texts)[:_DESCRIPTION_LIMIT] or None


def outcome_code(status: int) -> str:
    if status < 400:
        return "0"  # success
    if status < 500:
        return "4"  # minor failure: the request was refused
    return "8"  # serious failure: the server failed


def _agent(access: Access) -> dict[str, Any]:
    caller = access.caller
    agent: dict[str, Any] = {}
    if caller is not None and caller.user_id:
        agent["type"] = {"coding": [{"system": ROLE_TYPE, "code": "humanuser"}]}
    if caller is not None:
        agent["role"] = [{"coding": [{"system": ROLE_SYSTEM, "code": caller.role}]}]
    if caller is not None and caller.user_id:
        agent["who"] = {"identifier": {"system": IDNPS, "value": caller.user_id}}
        agent["altId"] = caller.user_id
    if caller is None:
        agent["name"] = "unidentified"
    elif caller.client_id:
        agent["name"] = caller.client_id
    elif caller.user_id:
        agent["name"] = caller.user_id
    else:
        agent["name"] = "anonymous"  # FHIR_AUTH=none
    agent["requestor"] = True
    if access.client:
        agent["network"] = {"address": access.client, "type": "2"}  # 2: IP address
    return agent


def _entity(access: Access, found: Interaction, code: str | None) -> dict[str, Any] | None:
    entity: dict[str, Any] = {}
    reference = found.reference
    if code in ("create", "update", "patch") and access.status < 400:
        reference = _location_reference(access.location) or _versioned(reference, access.etag)
    if reference:
        entity["what"] = {"reference": reference}
    res_type = found.res_type or (reference.split("/")[0] if reference else None)
    if code in ("transaction", "batch"):
        res_type = "Bundle"
    if res_type:
        entity["type"] = {"system": RESOURCE_TYPES, "code": res_type}
    if access.query:
        query = recordable_query(access.query)
        if query:
            entity["query"] = base64.b64encode(query.encode()).decode("ascii")
            entity["description"] = query[:_DESCRIPTION_LIMIT]
    return entity or None


def audit_event(access: Access, source: str, zone: ZoneInfo) -> dict[str, Any]:
    """The AuditEvent of one access (without id and meta: the store assigns them)."""
    found = classify(access.method, access.path)
    code = found.code
    if code == "transaction":
        code = _bundle_interaction(access.body)
    event: dict[str, Any] = {"resourceType": "AuditEvent"}
    if access.path.startswith("/auth/"):  # the server's own login pages
        event["type"] = {"system": DICOM, "code": "110114", "display": "User Authentication"}
    else:
        event["type"] = {"system": EVENT_TYPE, "code": "rest", "display": "RESTful Operation"}
        if code is not None:  # None: no FHIR interaction (HEAD, a method a path lacks: 405)
            event["subtype"] = [{"system": INTERACTION, "code": code}]
    event["action"] = _ACTIONS.get(code or "", "R" if access.method in ("GET", "HEAD") else "E")
    event["recorded"] = format_instant(datetime.fromtimestamp(access.started, UTC), zone)
    event["outcome"] = outcome_code(access.status)
    if access.status >= 400:
        described = outcome_description(access.body)
        event["outcomeDesc"] = described or f"HTTP {access.status}"
    event["agent"] = [_agent(access)]
    event["source"] = {
        "site": source,
        "observer": {"display": source},
        "type": [{"system": SOURCE_TYPE, "code": "3", "display": "Web Server"}],
    }
    entity = _entity(access, found, code)
    if entity is not None:
        event["entity"] = [entity, *_entries(access.written)]
    return event


def _entries(written: tuple[bytes, ...]) -> list[dict[str, Any]]:
    """One entity per resource a batch or transaction wrote (its entry's location)."""
    entities = []
    for location in written:
        reference = _location_reference(location.decode("utf-8", "replace"))
        if reference:
            what = {"reference": reference}
            kind = {"system": RESOURCE_TYPES, "code": reference.split("/")[0]}
            entities.append({"what": what, "type": kind})
    return entities
