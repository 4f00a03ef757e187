"""The server's own writes of a Subscription's state (docs/subscriptions.md): ``error``
after too many failed notifications, as a new version through the ordinary write path."""

from __future__ import annotations

import orjson

from fhir_server.core.caller import SYSTEM
from fhir_server.interactions._resource import write_version
from fhir_server.interactions.context import Context

ERROR_CHARS = 500


async def set_error(ctx: Context, sub_id: str, text: str) -> bool:
    """Set Subscription ``sub_id`` to ``status=error`` with ``text``; False when it is gone
    or no longer active (a client changed it meanwhile: its choice stands)."""
    system = ctx.acting_for(SYSTEM)
    async with ctx.store.writing(SYSTEM) as session:
        current = await session.current("Subscription", sub_id)
        if current is None or current.deleted:
            return False
        resource = orjson.loads(current.content)
        if resource.get("status") != "active":
            return False
        resource["status"] = "error"
        resource["error"] = text[:ERROR_CHARS]
        await write_version(
            system,
            session,
            resource,
            res_type="Subscription",
            res_id=sub_id,
            previous=current,
            method="PUT",
        )
    return True
