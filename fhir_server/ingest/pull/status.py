"""``$pull-status`` as FHIR: a ``Parameters`` with one ``source`` per configured source
(its freshness: last success, last error, failures, slot count, next due, lease holder).
Never a header, key or certificate path: what an admin needs to see a source is late."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from fhir_server.ingest.pull.config import PullSource
from fhir_server.ingest.pull.endpoint import endpoint_id
from fhir_server.ingest.pull.fetch import where
from fhir_server.ingest.pull.state import SourceState


def _instant(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def status_of(source: PullSource, state: SourceState | None) -> str:
    if not source.enabled:
        return "off"
    if state is None or (state.last_success is None and state.last_error is None):
        return "pending"
    return "error" if state.failures else "active"


def pull_status(sources: Sequence[PullSource], states: dict[str, SourceState]) -> dict[str, Any]:
    found: dict[str, Any] = {"resourceType": "Parameters"}
    if sources:  # FHIR JSON has no empty arrays
        found["parameter"] = [_source(s, states.get(s.name)) for s in sources]
    return found


def _source(source: PullSource, state: SourceState | None) -> dict[str, Any]:
    part: list[dict[str, Any]] = [
        {"name": "name", "valueString": source.name},
        {"name": "format", "valueCode": source.format},
        {"name": "address", "valueUrl": where(source.url)},
        {"name": "endpoint", "valueReference": {"reference": f"Endpoint/{endpoint_id(source)}"}},
        {"name": "status", "valueCode": status_of(source, state)},
        {"name": "interval", "valueDecimal": source.interval},
    ]
    if state is not None:
        part.append({"name": "failures", "valueInteger": state.failures})
        optional: list[tuple[str, str, Any]] = [
            ("lastSuccess", "valueInstant", state.last_success),
            ("lastError", "valueString", state.last_error),
            ("lastErrorAt", "valueInstant", state.last_error_at),
            ("slotCount", "valueInteger", state.slot_count),
            ("rejected", "valueInteger", state.rejected),
            ("nextDue", "valueInstant", state.next_due if source.enabled else None),
            ("leaseHolder", "valueString", state.lease_owner),
            ("leaseExpires", "valueInstant", state.lease_expires),
        ]
        for name, kind, value in optional:
            if value is not None:
                shown = _instant(value) if isinstance(value, datetime) else value
                part.append({"name": name, kind: shown})
    return {"name": "source", "part": part}
