"""SAS appointments for the tests, in the shape of the guide's examples (INT_R03), with
made-up identifiers."""

from __future__ import annotations

from typing import Any

from fhir_server.delivery.sas import OPERATOR, PROFILE

SYSTEM = "urn:oid:1.2.250.1.999.1"  # our software's (made-up) identifier authority
IDNPS = {
    "coding": [{"system": "http://interopsante.org/fhir/CodeSystem/fr-v2-0203", "code": "IDNPS"}]
}


def sas_appointment(
    value: str = "rdv-0001", status: str = "booked", **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Appointment",
        "meta": {"profile": [PROFILE]},
        "extension": [
            {
                "url": OPERATOR,
                "valueReference": {
                    "identifier": {
                        "type": IDNPS,
                        "system": "urn:oid:1.2.250.1.71.4.2.1",
                        "value": "3999999999/00000001",
                    }
                },
            }
        ],
        "identifier": [{"system": SYSTEM, "value": value}],
        "status": status,
        "start": "2026-12-08T14:00:00+01:00",
        "end": "2026-12-08T14:15:00+01:00",
        "participant": [
            {
                "actor": {
                    "identifier": {
                        "type": IDNPS,
                        "system": "urn:oid:1.2.250.1.71.4.2.1",
                        "value": "899999999999",
                    }
                },
                "status": "accepted",
            }
        ],
    }
    body.update(extra)
    return body


def plain_appointment() -> dict[str, Any]:
    """An appointment not made through SAS: never sent."""
    return {
        "resourceType": "Appointment",
        "status": "booked",
        "start": "2026-12-08T15:00:00+01:00",
        "end": "2026-12-08T15:15:00+01:00",
        "participant": [{"actor": {"display": "Dr X"}, "status": "accepted"}],
    }
