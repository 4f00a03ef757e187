"""Which Appointments go to the SAS platform, and what is sent (INT_R03, vendor side).

An Appointment is *made through SAS* when it carries the ``FrAppointmentOperator``
extension (the regulator who booked it: only the SAS's regulation books with one) or
claims the ``FrAppointmentSAS`` profile. Each version of such an Appointment (created,
modified, cancelled, fulfilled, noshow) is queued on channel ``sas`` in the write's own
transaction, and so is every later version of one that was (a version that dropped the
marker still changes what the platform knows). A deletion of one not already cancelled,
fulfilled or noshow is sent as cancelled: the platform has no delete.

The body is the stored version made for the platform: no ``id`` (the platform has its
own), ``meta`` reduced to its profile, exactly one ``identifier`` (the profile allows one):
the one of system ``FHIR_SAS_IDENTIFIER_SYSTEM``, else that system with our resource id,
no ``contained`` resource and no participant that is a Patient, a RelatedPerson or a
contained resource (``#id``): no patient data leaves for the SAS (the minimal patient data
booked here, ``booking/patient.py``, is for the practitioner; the guide's examples carry
none), and no reference is left dangling. The first version known to the platform is a ``POST
/Appointment``, later ones ``PUT /Appointment?identifier=system|value``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from fhir_server.delivery.queue import Message, enqueue
from fhir_server.storage.port import Stored, WriteSession

CHANNEL = "sas"
OPERATOR = "http://interopsante.org/fhir/StructureDefinition/FrAppointmentOperator"
PROFILE = "http://sas.fr/fhir/StructureDefinition/FrAppointmentSAS"
PROFILES = frozenset({PROFILE, "http://interopsante.org/fhir/StructureDefinition/FrAppointmentSAS"})
# statuses after which a deletion tells the platform nothing new
SETTLED = frozenset({"cancelled", "fulfilled", "noshow", "entered-in-error"})
PATIENT_TYPES = ("Patient/", "RelatedPerson/")


def made_through_sas(appointment: dict[str, Any]) -> bool:
    extensions = appointment.get("extension") or []
    if any(isinstance(e, dict) and e.get("url") == OPERATOR for e in extensions):
        return True
    profiles = (appointment.get("meta") or {}).get("profile") or []
    return any(p in PROFILES for p in profiles)


def platform_body(appointment: dict[str, Any], res_id: str, system: str) -> tuple[bytes, str]:
    """The body sent to the platform and its identifier ``system|value``."""
    mine = [
        i
        for i in appointment.get("identifier") or []
        if isinstance(i, dict) and i.get("system") == system and i.get("value")
    ]
    identifier = mine[0] if mine else {"system": system, "value": res_id}
    body: dict[str, Any] = {"resourceType": "Appointment"}
    profiles = (appointment.get("meta") or {}).get("profile") or [PROFILE]
    body["meta"] = {"profile": profiles}
    for key, value in appointment.items():
        if key in ("resourceType", "id", "meta", "identifier", "text", "contained"):
            continue
        if key == "participant":
            value = [p for p in value if not _a_patient(p)]
        body[key] = value
    body["identifier"] = [identifier]
    return orjson.dumps(body), f"{identifier['system']}|{identifier['value']}"


def _a_patient(participant: Any) -> bool:
    actor = participant.get("actor") if isinstance(participant, dict) else None
    reference = actor.get("reference") if isinstance(actor, dict) else None
    kind = actor.get("type") if isinstance(actor, dict) else None
    if isinstance(reference, str) and reference.startswith(("#", *PATIENT_TYPES)):
        return True  # "#…": a contained resource, which is not sent
    return kind in ("Patient", "RelatedPerson")


class SasOutbox:
    """The write hook queuing SAS appointments (``hooks.WriteHook``); ``wake`` is called
    once the write has committed (the local sender sends at once)."""

    def __init__(self, identifier_system: str, wake: Callable[[], None] | None = None) -> None:
        self.identifier_system = identifier_system
        self.wake = wake

    async def wrote(self, session: WriteSession, stored: Stored, previous: Stored | None) -> None:
        if stored.res_type != "Appointment":
            return
        message = self.message(stored, previous)
        if message is None:
            return
        await enqueue(session, message)
        if self.wake is not None:
            session.after_commit(self.wake)

    def message(self, stored: Stored, previous: Stored | None) -> Message | None:
        resource = orjson.loads(stored.content)
        known = previous is not None and made_through_sas(orjson.loads(previous.content))
        if not (known or made_through_sas(resource)):
            return None
        if stored.deleted:
            if not known or resource.get("status") in SETTLED:
                return None
            resource = {**resource, "status": "cancelled"}
        body, identifier = platform_body(resource, stored.res_id, self.identifier_system)
        return Message(
            channel=CHANNEL,
            key=f"Appointment/{stored.res_id}",
            res_type="Appointment",
            res_id=stored.res_id,
            version=stored.version,
            body=body,
            headers={"method": "PUT" if known else "POST", "identifier": identifier},
        )
