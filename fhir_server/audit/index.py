"""The search index rows of the AuditEvents this server writes, without FHIRPath.

The generic indexer (``search/indexing/indexer.py``) evaluates all 23 R4 AuditEvent
parameters' expressions on every event: ~100 µs of the request-serving process per event.
The events come from one builder (``events.py``) whose shape is known, so their rows are read
straight from it here: the same rows (a test compares both on every shape ``events.py``
makes), a few microseconds. ``indexer_for`` keeps the generic indexer when the registry's
AuditEvent parameters are not exactly the ones this module knows (a package added one).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fhir_server.core import fhirtime
from fhir_server.search.indexing.indexer import index_resource, normalize
from fhir_server.search.registry.parameters import Registry
from fhir_server.storage.port import IndexRows

Indexer = Callable[[dict[str, Any]], IndexRows]

# The R4 AuditEvent parameters with an expression, and the element each one reads.
KNOWN = {
    "_profile": "Resource.meta.profile",
    "_security": "Resource.meta.security",
    "_source": "Resource.meta.source",
    "_tag": "Resource.meta.tag",
    "_id": "Resource.id",
    "_lastUpdated": "Resource.meta.lastUpdated",
    "action": "AuditEvent.action",
    "address": "AuditEvent.agent.network.address",
    "agent": "AuditEvent.agent.who",
    "agent-name": "AuditEvent.agent.name",
    "agent-role": "AuditEvent.agent.role",
    "altid": "AuditEvent.agent.altId",
    "date": "AuditEvent.recorded",
    "entity": "AuditEvent.entity.what",
    "entity-name": "AuditEvent.entity.name",
    "entity-role": "AuditEvent.entity.role",
    "entity-type": "AuditEvent.entity.type",
    "outcome": "AuditEvent.outcome",
    "patient": "AuditEvent.agent.who.where(resolve() is Patient)"
    " | AuditEvent.entity.what.where(resolve() is Patient)",
    "policy": "AuditEvent.agent.policy",
    "site": "AuditEvent.source.site",
    "source": "AuditEvent.source.observer",
    "subtype": "AuditEvent.subtype",
    "type": "AuditEvent.type",
}


def indexer_for(registry: Registry) -> Indexer:
    """The fast indexer when the registry's AuditEvent parameters are R4's, else the generic."""
    params = {
        p.code: p.expression for p in registry.for_type("AuditEvent").values() if p.expression
    }
    if params == KNOWN:
        return audit_index
    return lambda event: index_resource(registry, event)


def _coding(param: str, coding: dict[str, Any], text: str | None = None) -> dict[str, Any]:
    return {
        "param": param,
        "system": coding.get("system"),
        "code": coding.get("code"),
        "text": coding.get("display") or text,
    }


def _plain(param: str, code: str) -> dict[str, Any]:
    return {"param": param, "system": None, "code": code, "text": None}


def _string(param: str, value: str) -> dict[str, Any]:
    # addresses and client ids are ASCII: nothing for ``normalize`` to take off but case
    norm = value.lower().strip() if value.isascii() else normalize(value)
    return {"param": param, "norm": norm, "value": value}


def _reference(reference: str) -> dict[str, Any]:
    ref = reference.split("/_history/")[0]
    parts = ref.rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2][:1].isupper():
        url = ref if "://" in ref else None
        return {"param": "entity", "target_type": parts[-2], "target_id": parts[-1], "url": url}
    return {"param": "entity", "target_type": None, "target_id": None, "url": ref}


def audit_index(event: dict[str, Any]) -> IndexRows:
    """The rows of an event made by ``events.audit_event`` (and only of those)."""
    tokens = [_coding("type", event["type"]), _plain("action", event["action"])]
    tokens.append(_plain("outcome", event["outcome"]))
    tokens.extend(_coding("subtype", c) for c in event.get("subtype", ()))
    tokens.append(_plain("site", event["source"]["site"]))
    strings: list[dict[str, Any]] = []
    references: list[dict[str, Any]] = []
    for agent in event["agent"]:
        for role in agent.get("role", ()):
            tokens.extend(_coding("agent-role", c, role.get("text")) for c in role["coding"])
        if "altId" in agent:
            tokens.append(_plain("altid", agent["altId"]))
        if agent.get("name", "").strip():
            strings.append(_string("agent-name", agent["name"]))
        address = agent.get("network", {}).get("address")
        if address and address.strip():
            strings.append(_string("address", address))
    for entity in event.get("entity", ()):
        if "type" in entity:
            tokens.append(_coding("entity-type", entity["type"]))
        what = entity.get("what", {}).get("reference")
        if what and not what.startswith("#"):
            references.append(_reference(what))
    low, high = fhirtime.parse_range(event["recorded"])
    rows: IndexRows = {
        "token": tokens,
        "date": [{"param": "date", "low": low, "high": high}],
    }
    if strings:
        rows["string"] = strings
    if references:
        rows["reference"] = references
    return rows
