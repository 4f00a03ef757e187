"""A bookable practitioner for the booking page's tests: Practitioner, PractitionerRole with
its contained Location, Schedule, and Slots at times relative to now (future or past)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fhir_server.interactions import update
from fhir_server.interactions.context import Context

RPPS = "10000000001"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
REASON = "http://terminology.hl7.org/CodeSystem/v2-0276"
TYPE_CRENEAU = "https://mos.esante.gouv.fr/NOS/TRE_R314-TypeCreneau/FHIR/TRE-R314-TypeCreneau"


def practice() -> list[dict[str, Any]]:
    return [
        {
            "resourceType": "Practitioner",
            "id": "pr-page",
            "identifier": [{"system": "urn:oid:1.2.250.1.71.4.2.1", "value": "8" + RPPS}],
            "name": [{"family": "Lefèvre", "given": ["Hélène"], "prefix": ["Dr"]}],
        },
        {
            "resourceType": "PractitionerRole",
            "id": "role-page",
            "contained": [
                {
                    "resourceType": "Location",
                    "id": "loc",
                    "name": "Cabinet des Lilas",
                    "address": {
                        "line": ["3 rue des Lilas"],
                        "postalCode": "75019",
                        "city": "Paris",
                    },
                }
            ],
            "practitioner": {"reference": "Practitioner/pr-page"},
            "location": [{"reference": "#loc"}],
        },
        {
            "resourceType": "Schedule",
            "id": "sched-page",
            "actor": [
                {"reference": "Practitioner/pr-page"},
                {"reference": "PractitionerRole/role-page"},
            ],
        },
    ]


def slot(res_id: str, start: datetime, *, status: str = "free") -> dict[str, Any]:
    return {
        "resourceType": "Slot",
        "id": res_id,
        "meta": {"security": [{"system": TYPE_CRENEAU, "code": "PUBLIC"}]},
        "serviceType": [{"coding": [{"system": ACT_CODE, "code": "AMB"}]}],
        "appointmentType": {"coding": [{"system": REASON, "code": "ROUTINE"}]},
        "schedule": {"reference": "Schedule/sched-page"},
        "status": status,
        "start": start.isoformat(timespec="seconds"),
        "end": (start + timedelta(minutes=15)).isoformat(timespec="seconds"),
    }


def tomorrow_at(hour: int, minute: int = 0) -> datetime:
    """A time tomorrow, in UTC (the page shows it in Paris time)."""
    day = datetime.now(UTC) + timedelta(days=1)
    return day.replace(hour=hour, minute=minute, second=0, microsecond=0)


async def seed(ctx: Context, *slots: dict[str, Any]) -> None:
    for resource in [*practice(), *slots]:
        await update.update(ctx, resource["resourceType"], resource["id"], resource)
