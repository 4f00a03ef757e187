"""What the party tests push and book: a vendor's Schedule and free PUBLIC Slot on it."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from auth.policy import TYPE_CRENEAU


def schedule(res_id: str, display: str = "Dr") -> dict[str, Any]:
    return {"resourceType": "Schedule", "id": res_id, "actor": [{"display": display}]}


def free_slot(res_id: str, schedule_id: str, start: datetime) -> dict[str, Any]:
    """A free 20-minute PUBLIC Slot of ``Schedule/<schedule_id>`` from ``start``."""
    return {
        "resourceType": "Slot",
        "id": res_id,
        "meta": {"security": [{"system": TYPE_CRENEAU, "code": "PUBLIC"}]},
        "schedule": {"reference": f"Schedule/{schedule_id}"},
        "status": "free",
        "start": start.isoformat(),
        "end": (start + timedelta(minutes=20)).isoformat(),
    }
