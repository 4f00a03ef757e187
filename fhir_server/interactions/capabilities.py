"""capabilities: https://hl7.org/fhir/R4/http.html#capabilities.

The CapabilityStatement is computed from what is wired: the routes the API registered
(their FHIR interaction codes) and the search parameter registry. Nothing is hand-listed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from fhir_server.core.fhirtime import format_instant, utcnow
from fhir_server.core.types import SERVED_TYPES
from fhir_server.interactions.context import Context

TYPE_LEVEL = (
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
)
SYSTEM_LEVEL = ("transaction", "batch", "search-system", "history-system")
# The server's own system-level operations (docs/api.md describes each), listed when their
# router is wired; their definitions are canonical names of ours, not (yet) served as
# OperationDefinition resources.
OPERATION_BASE = "https://github.com/sas-fhir-server/OperationDefinition"
SYSTEM_OPERATIONS = {
    "ingest": "POST a vendor feed, reconciled per practitioner (docs/ingest.md)",
    "pull-status": "the pulled sources' freshness, admins only (docs/pull.md)",
    "delivery-status": "the outbox's counts, retries and failures, admins only (docs/delivery.md)",
}


def capability_statement(
    ctx: Context, base_url: str, interactions: Iterable[str], software: str, version: str
) -> bytes:
    wired = set(interactions)
    resources: list[dict[str, Any]] = []
    for res_type in SERVED_TYPES:
        entry: dict[str, Any] = {
            "type": res_type,
            "interaction": [{"code": code} for code in TYPE_LEVEL if code in wired],
            "versioning": "versioned-update",
            "readHistory": "vread" in wired,
            "updateCreate": "update" in wired,
            "conditionalCreate": "create" in wired,
            "conditionalRead": "not-supported",
            "conditionalUpdate": "update" in wired,
            "conditionalDelete": "single" if "delete" in wired else "not-supported",
        }
        if "validate" in wired:
            entry["operation"] = [
                {
                    "name": "validate",
                    "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate",
                }
            ]
        params = ctx.registry.for_type(res_type)
        if "search-type" in wired:
            entry["searchInclude"] = ["*"] + [
                f"{res_type}:{p.code}"
                for p in sorted(params.values(), key=lambda p: p.code)
                if p.type == "reference"
            ]
            entry["searchRevInclude"] = sorted(
                f"{other}:{p.code}"
                for other in SERVED_TYPES
                for p in ctx.registry.for_type(other).values()
                if p.type == "reference" and (res_type in p.target or not p.target)
            )
        if "search-type" in wired and params:
            entry["searchParam"] = [
                {"name": p.code, "definition": p.url, "type": p.type}
                for p in sorted(params.values(), key=lambda p: p.code)
                if p.url and p.expression
            ]
        resources.append(entry)
    rest: dict[str, Any] = {
        "mode": "server",
        "resource": resources,
        "interaction": [{"code": code} for code in SYSTEM_LEVEL if code in wired],
    }
    operations = [code for code in SYSTEM_OPERATIONS if code in wired]
    if operations:
        rest["operation"] = [
            {
                "name": code,
                "definition": f"{OPERATION_BASE}/{code}",
                "documentation": SYSTEM_OPERATIONS[code],
            }
            for code in operations
        ]
    statement = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": format_instant(utcnow(), ctx.timezone),
        "kind": "instance",
        "software": {"name": software, "version": version},
        "implementation": {"description": "SAS FHIR server", "url": base_url},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json"] if "patch" in wired else [],
        "rest": [rest],
    }
    if not statement["patchFormat"]:
        del statement["patchFormat"]
    return orjson.dumps(statement)
