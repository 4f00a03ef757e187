"""What the booking page shows of a slot, in French: read as the signed-in person.

A Slot, its Schedule, the Schedule's actors (Practitioner, PractitionerRole with its
contained Location, or a Location for SOS Médecins) and the consultation type, gathered
through the read interaction (so the access policy decides what the person may see) and
turned into a few strings for the template. Times are shown in the server's zone
(Europe/Paris).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from fhir_server.core import errors
from fhir_server.interactions import read
from fhir_server.interactions.context import Context

RPPS_SYSTEM = "urn:oid:1.2.250.1.71.4.2.1"
IDNPS_TYPE = {"system": "http://interopsante.org/fhir/CodeSystem/fr-v2-0203", "code": "IDNPS"}
DAYS = ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche")
MONTHS = (
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
)
# TRE-R… consultation types of the SAS guide (v3-ActCode) and appointment reasons (v2-0276)
CONSULTATION = {
    "AMB": "consultation au cabinet",
    "HH": "visite à domicile",
    "VR": "téléconsultation",
}
REASONS = {
    "ROUTINE": "rendez-vous programmé",
    "WALKIN": "consultation sans rendez-vous",
    "EMERGENCY": "urgence",
    "FOLLOWUP": "suivi",
    "CHECKUP": "bilan",
}


@dataclass(frozen=True)
class SlotView:
    """One slot as the page shows it, and what a booking of it needs."""

    slot_id: str
    status: str
    start: datetime
    end: datetime
    start_text: str  # the FHIR instants, copied as they are into the Appointment
    end_text: str
    day: str
    hours: str
    practitioner: str | None
    rpps: str | None
    place: str | None
    consultation: str | None
    participants: tuple[dict[str, Any], ...]  # the Appointment's participant entries

    @property
    def is_free(self) -> bool:
        return self.status == "free"

    def is_past(self, now: datetime) -> bool:
        return self.start <= now


def french_day(moment: datetime) -> str:
    return f"{DAYS[moment.weekday()]} {moment.day} {MONTHS[moment.month - 1]} {moment.year}"


def french_time(moment: datetime) -> str:
    return f"{moment.hour} h {moment.minute:02d}"


async def slot_view(ctx: Context, slot_id: str) -> SlotView:
    """The slot and what it belongs to. NotFound/Gone (raised by ``read``) when the slot is
    unknown, invisible to this person, or deleted."""
    slot = await _read(ctx, "Slot", slot_id)
    start = datetime.fromisoformat(slot["start"]).astimezone(ctx.timezone)
    end = datetime.fromisoformat(slot["end"]).astimezone(ctx.timezone)
    schedule = await _reference(ctx, slot.get("schedule"))
    actors = [a for a in (schedule or {}).get("actor", []) if isinstance(a, dict)]
    practitioner = rpps = place = None
    participants: list[dict[str, Any]] = []
    for actor in actors:
        target = await _reference(ctx, actor)
        reference = actor.get("reference")
        if target is None or not isinstance(reference, str):
            continue
        entry: dict[str, Any] = {"actor": {"reference": reference}, "status": "accepted"}
        kind = target.get("resourceType")
        if kind == "Practitioner":
            practitioner = _name(target)
            national = _national_id(target)
            if national:
                rpps = national[1:] if national.startswith("8") else national
                entry["actor"]["identifier"] = {
                    "type": {"coding": [IDNPS_TYPE]},
                    "system": RPPS_SYSTEM,
                    "value": national,
                }
        elif kind == "PractitionerRole":
            place = place or _role_place(target)
        elif kind == "Location":
            place = place or _address(target)
        participants.append(entry)
    if not participants:  # a schedule without readable actors cannot be booked
        raise errors.conflict(f"Slot/{slot_id} has no bookable schedule", code="business-rule")
    return SlotView(
        slot_id=slot_id,
        status=str(slot.get("status", "")),
        start=start,
        end=end,
        start_text=slot["start"],
        end_text=slot["end"],
        day=french_day(start),
        hours=f"de {french_time(start)} à {french_time(end)}",
        practitioner=practitioner,
        rpps=rpps,
        place=place,
        consultation=_consultation(slot),
        participants=tuple(participants),
    )


async def _read(ctx: Context, res_type: str, res_id: str) -> dict[str, Any]:
    stored = await read.read(ctx, res_type, res_id)
    body: dict[str, Any] = orjson.loads(stored.content)
    return body


async def _reference(ctx: Context, ref: Any) -> dict[str, Any] | None:
    text = ref.get("reference") if isinstance(ref, dict) else None
    if not isinstance(text, str) or text.count("/") != 1:
        return None
    res_type, res_id = text.split("/")
    try:
        return await _read(ctx, res_type, res_id)
    except errors.FhirError:  # gone or not visible: the page shows less
        return None


def _name(practitioner: dict[str, Any]) -> str | None:
    for name in practitioner.get("name", []):
        parts = [*name.get("prefix", []), *name.get("given", []), name.get("family", "")]
        text = " ".join(p for p in parts if p)
        if text:
            return text
    return None


def _national_id(resource: dict[str, Any]) -> str | None:
    for identifier in resource.get("identifier", []):
        if identifier.get("system") == RPPS_SYSTEM and identifier.get("value"):
            return str(identifier["value"])
    return None


def _address(location: dict[str, Any]) -> str | None:
    address = location.get("address") or {}
    parts = [*address.get("line", []), address.get("postalCode"), address.get("city")]
    text = " ".join(str(p) for p in parts if p)
    name = location.get("name")
    if name and text:
        return f"{name}, {text}"
    return name or text or None


def _role_place(role: dict[str, Any]) -> str | None:
    contained = {c.get("id"): c for c in role.get("contained", []) if isinstance(c, dict)}
    for ref in role.get("location", []):
        text = ref.get("reference", "") if isinstance(ref, dict) else ""
        if text.startswith("#") and text[1:] in contained:
            return _address(contained[text[1:]])
    return None


def _consultation(slot: dict[str, Any]) -> str | None:
    labels: list[str] = []
    for concept in slot.get("serviceType", []):
        for coding in concept.get("coding", []):
            label = CONSULTATION.get(coding.get("code", ""))
            if label:
                labels.append(label)
        if concept.get("text"):
            labels.append(str(concept["text"]))
    for coding in (slot.get("appointmentType") or {}).get("coding", []):
        reason = REASONS.get(coding.get("code", ""))
        if reason:
            labels.append(reason)
    if not labels:
        return None
    text = ", ".join(dict.fromkeys(labels))
    return text[0].upper() + text[1:]
