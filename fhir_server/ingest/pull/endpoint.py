"""Each source as a FHIR ``Endpoint`` (id ``pull-NAME``), for admins and the SAS tooling:
its address, format and status (``active``: last poll read it; ``error``: the last poll
failed; ``off``: disabled in the sources file).

Written only when something it says changes, so polling every few minutes does not make a
new version each time; compared with what is stored (not with a flag of this process), so
any process repairs an Endpoint another one could not write.
"""

from __future__ import annotations

from typing import Any, Literal

import orjson

from fhir_server.core.caller import SYSTEM
from fhir_server.ingest.pull.config import PullSource
from fhir_server.ingest.pull.fetch import where
from fhir_server.interactions.context import Context
from fhir_server.interactions.update import update

Status = Literal["active", "error", "off"]
CONNECTION_TYPES = "http://terminology.hl7.org/CodeSystem/endpoint-connection-type"
# the binding is extensible: feeds that are not FHIR REST are named by their format
PULL_FORMATS = "urn:fhir-server:pull-format"


def endpoint_id(source: PullSource) -> str:
    return f"pull-{source.name}"


def endpoint_for(source: PullSource, status: Status) -> dict[str, Any]:
    connection = (
        {"system": CONNECTION_TYPES, "code": "hl7-fhir-rest"}
        if source.format == "sas-fhir"
        else {"system": PULL_FORMATS, "code": source.format}
    )
    return {
        "resourceType": "Endpoint",
        "id": endpoint_id(source),
        "status": status,
        "connectionType": connection,
        "name": source.name,
        "payloadType": [{"text": f"agenda feed ({source.format})"}],
        "address": where(source.url),
    }


async def retire_endpoint(ctx: Context, name: str) -> bool:
    """The Endpoint of a source no longer in the sources file, shown ``off`` (its state row
    and history are kept: the source may come back); whether it was written."""
    system = ctx.acting_for(SYSTEM)
    stored = await system.store.read("Endpoint", f"pull-{name}", SYSTEM)
    if stored is None or stored.deleted:
        return False
    current = orjson.loads(stored.content)
    if current.get("status") == "off":
        return False
    current.pop("meta", None)
    await update(system, "Endpoint", current["id"], {**current, "status": "off"})
    return True


async def sync_endpoint(ctx: Context, source: PullSource, status: Status) -> bool:
    """Write the source's Endpoint when it differs from the stored one; whether it did."""
    wanted = endpoint_for(source, status)
    system = ctx.acting_for(SYSTEM)
    stored = await system.store.read("Endpoint", wanted["id"], SYSTEM)
    if stored is not None and not stored.deleted:
        current = orjson.loads(stored.content)
        current.pop("meta", None)
        if current == wanted:
            return False
    await update(system, "Endpoint", wanted["id"], wanted)
    return True
