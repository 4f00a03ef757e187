"""Build response Bundles around stored JSON without re-parsing it (``orjson.Fragment``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from fhir_server.core.fhirtime import format_instant, utcnow
from fhir_server.storage.port import Stored


def full_url(base_url: str, stored: Stored) -> str:
    return f"{base_url}/{stored.res_type}/{stored.res_id}"


def etag(stored: Stored) -> str:
    return f'W/"{stored.version}"'


def resource_fragment(stored: Stored) -> orjson.Fragment:
    return orjson.Fragment(stored.content)


def bundle(
    bundle_type: str,
    entries: Sequence[dict[str, Any] | orjson.Fragment],
    *,
    total: int | None = None,
    links: list[tuple[str, str]] = (),  # type: ignore[assignment]
    bundle_id: str | None = None,
) -> bytes:
    out: dict[str, Any] = {"resourceType": "Bundle"}
    if bundle_id:
        out["id"] = bundle_id
    out["meta"] = {"lastUpdated": format_instant(utcnow())}
    out["type"] = bundle_type
    if total is not None:
        out["total"] = total
    if links:
        out["link"] = [{"relation": rel, "url": url} for rel, url in links]
    if entries:
        out["entry"] = entries
    return orjson.dumps(out)


def history_entry(base_url: str, stored: Stored) -> dict[str, Any]:
    url = f"{stored.res_type}/{stored.res_id}"
    entry: dict[str, Any] = {"fullUrl": f"{base_url}/{url}"}
    if not stored.deleted:
        entry["resource"] = resource_fragment(stored)
    method = stored.method or ("DELETE" if stored.deleted else "PUT")
    entry["request"] = {
        "method": method,
        "url": url if method != "POST" else stored.res_type,
    }
    status = {"POST": "201 Created", "DELETE": "204 No Content"}.get(method, "200 OK")
    entry["response"] = {
        "status": status,
        "etag": etag(stored),
        "lastModified": format_instant(stored.last_updated),
    }
    return entry
