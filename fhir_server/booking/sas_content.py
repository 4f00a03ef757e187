"""FrAppointmentSAS content of an Appointment booked here (no I/O).

The profile (``ans.fhir.fr.sas``, ``FrAppointmentSAS``) requires the regulator who booked as
the ``FrAppointmentOperator`` extension and identifies the practitioner participant by
IDNPS (``identifier.type`` IDNPS of fr-v2-0203, system ``urn:oid:1.2.250.1.71.4.2.1``).
When a booking leaves them out, the server adds them: the operator from the authenticated
person, the practitioner from the slot's Schedule actor. What the client set is kept.
"""

from __future__ import annotations

from typing import Any

OPERATOR_URL = "http://interopsante.org/fhir/StructureDefinition/FrAppointmentOperator"
IDNPS_SYSTEM = "urn:oid:1.2.250.1.71.4.2.1"
IDNPS_TYPE = {
    "coding": [{"system": "http://interopsante.org/fhir/CodeSystem/fr-v2-0203", "code": "IDNPS"}]
}


def idnps_of_person(national_id: str) -> str:
    """A person's IDNPS: ``8`` + RPPS for an 11-digit RPPS, the id as is otherwise."""
    if len(national_id) == 11 and national_id.isdigit():
        return "8" + national_id
    return national_id


def identifier(idnps: str) -> dict[str, Any]:
    return {"type": IDNPS_TYPE, "system": IDNPS_SYSTEM, "value": idnps}


def add_operator(appointment: dict[str, Any], idnps: str) -> None:
    extensions = appointment.setdefault("extension", [])
    if any(e.get("url") == OPERATOR_URL for e in extensions if isinstance(e, dict)):
        return
    extensions.append({"url": OPERATOR_URL, "valueReference": {"identifier": identifier(idnps)}})


def practitioner_idnps(practitioner: dict[str, Any]) -> str | None:
    for ident in practitioner.get("identifier") or ():
        if isinstance(ident, dict) and ident.get("system") == IDNPS_SYSTEM and ident.get("value"):
            return str(ident["value"])
    return None


def add_practitioner(appointment: dict[str, Any], idnps: str) -> None:
    """The practitioner as a participant identified by IDNPS, unless one already is."""
    participants = appointment.setdefault("participant", [])
    for p in participants:
        actor = p.get("actor") if isinstance(p, dict) else None
        ident = actor.get("identifier") if isinstance(actor, dict) else None
        if isinstance(ident, dict) and ident.get("system") == IDNPS_SYSTEM:
            return
    participants.append({"actor": {"identifier": identifier(idnps)}, "status": "accepted"})
