"""The SAS aggregator resources every mapper emits, built one way.

Shapes of the ANS SAS guide 1.1.0 (``ans.fhir.fr.sas``) for a practitioner's offer:
``FrPractitionerAgregateur`` (IDNPS ``8`` + RPPS), ``FrPractitionerRoleExerciceAgregateur``
with its consultation place contained (``FrLocationAgregateur``), ``FrScheduleAgregateur``
and ``FrSlotAgregateur`` (``meta.security`` TypeCreneau TRE-R314, ``serviceType`` AMB/HH/VR,
``appointmentType``, the booking URL in ``comment``).

Ids are derived from the vendor's own keys (``stable_id``), so mapping the same input twice
gives the same resources, and the ingestion can tell new slots from known ones.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from datetime import datetime
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from mappings.contract import FhirJson
from mappings.localtime import sas_instant

# Profiles (canonicals exactly as in the SAS 1.1.0 package)
_SAS = "http://sas.fr/fhir/StructureDefinition/"
PROFILE_PRACTITIONER = _SAS + "FrPractitionerAgregateur"
PROFILE_PRACTITIONER_ROLE = _SAS + "FrPractitionerRoleExerciceAgregateur"
PROFILE_LOCATION = _SAS + "FrLocationAgregateur"
PROFILE_SCHEDULE = _SAS + "FrScheduleAgregateur"
PROFILE_SLOT = _SAS + "FrSlotAgregateur"

# Identifier and code systems
IDNPS_SYSTEM = "urn:oid:1.2.250.1.71.4.2.1"  # national PS id: "8" + RPPS, "0" + ADELI
IDNST_SYSTEM = "urn:oid:1.2.250.1.71.4.2.2"  # national structure id (FINESS, SIRET)
FR_V2_0203 = "http://interopsante.org/fhir/CodeSystem/fr-v2-0203"
FR_LOCATION_ID_TYPE = "http://interopsante.org/fhir/CodeSystem/fr-location-identifier-type"
TYPE_CRENEAU = "https://mos.esante.gouv.fr/NOS/TRE_R314-TypeCreneau/FHIR/TRE-R314-TypeCreneau"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
APPOINTMENT_REASON = "http://terminology.hl7.org/CodeSystem/v2-0276"

SLOT_TYPES = ("PUBLIC", "PRO", "SNP", "CPTS")  # TRE-R314 TypeCreneau
CONSULTATION_TYPES = ("AMB", "HH", "VR")  # v3-ActCode: in office, home visit, video
RPPS = re.compile(r"\d{11}")
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9.-]+")
_ID_SAFE = re.compile(r"[A-Za-z0-9.-]+")


def stable_id(vendor: str, *keys: object) -> str:
    """A FHIR id (``[A-Za-z0-9.-]{1,64}``) for a vendor's keys: readable when short, else a
    readable head and a hash of the whole, so distinct keys never share an id."""
    raw = "-".join(str(k) for k in (vendor, *keys))
    if len(raw) <= 64 and _ID_SAFE.fullmatch(raw) and raw[0] not in "-." and raw[-1] not in "-.":
        return raw  # what the lines below return for it, without a substitution
    readable = _ID_UNSAFE.sub("-", raw).strip("-.")
    if readable and len(readable) <= 64 and readable == raw:
        return readable
    digest = hashlib.sha256(raw.encode()).hexdigest()[:20]
    return f"{readable[:43].rstrip('-.')}-{digest}"


def vendor_identifier(vendor: str, kind: str, value: str) -> FhirJson:
    """The vendor's own key of a resource, so it can be found again (and searched)."""
    return {"system": f"urn:sas-fhir-server:{vendor}:{kind}", "value": value}


def practitioner(
    vendor: str, key: str, rpps: str, family: str | None, given: str | None
) -> FhirJson:
    name: FhirJson = {"use": "official"}
    if family:
        name["family"] = family
    if given:
        name["given"] = [given]
    out: FhirJson = {
        "resourceType": "Practitioner",
        "id": practitioner_id(vendor, key),
        "meta": {"profile": [PROFILE_PRACTITIONER]},
        "identifier": [
            {
                "type": {"coding": [{"system": FR_V2_0203, "code": "IDNPS"}]},
                "system": IDNPS_SYSTEM,
                "value": "8" + rpps,
            },  # the profile pins every identifier to IDNPS: the vendor key is in the id
        ],
        "active": True,
    }
    if len(name) > 1:
        out["name"] = [name]
    return out


def practitioner_role(
    vendor: str,
    practitioner_key: str,
    place_key: str,
    *,
    place_name: str | None = None,
    address: FhirJson | None = None,
    position: tuple[float, float] | None = None,  # (latitude, longitude)
    structure_id: str | None = None,  # FINESS / SIRET of the practice, when known
    phone: str | None = None,
) -> FhirJson:
    """The practitioner's practice at one place, the place contained as ``#loc``."""
    location: FhirJson = {
        "resourceType": "Location",
        "id": "loc",
        "meta": {"profile": [PROFILE_LOCATION]},
        "identifier": [
            {
                "type": {"coding": [{"system": FR_LOCATION_ID_TYPE, "code": "INTRN"}]},
                "system": f"urn:sas-fhir-server:{vendor}:place",
                "value": place_key,
            }
        ],
        "status": "active",
    }
    if place_name:
        location["name"] = place_name
    if address:
        location["address"] = address
    if position is not None:
        location["position"] = {"latitude": position[0], "longitude": position[1]}
    role: FhirJson = {
        "resourceType": "PractitionerRole",
        "id": role_id(vendor, practitioner_key, place_key),
        "meta": {"profile": [PROFILE_PRACTITIONER_ROLE]},
        "contained": [location],
        "active": True,
        "practitioner": {"reference": f"Practitioner/{practitioner_id(vendor, practitioner_key)}"},
        "location": [{"reference": "#loc"}],
    }
    if structure_id:
        role["organization"] = {
            "identifier": {
                "type": {"coding": [{"system": FR_V2_0203, "code": "IDNST"}]},
                "system": IDNST_SYSTEM,
                "value": structure_id,
            }
        }
    if phone:
        role["telecom"] = [{"system": "phone", "value": phone, "use": "work"}]
    return role


def schedule(
    vendor: str,
    practitioner_key: str,
    place_key: str,
    *,
    motive_key: str | None = None,
) -> FhirJson:
    """The practitioner's agenda at a place; with ``motive_key``, the agenda of one motive
    there (inputs that are one motive's request: reconciling one motive's snapshot must not
    remove the slots of the others). FR Core forbids ``Schedule.serviceType``: the motive's
    name is on the Slots."""
    return {
        "resourceType": "Schedule",
        "id": schedule_id(vendor, practitioner_key, place_key, motive_key),
        "meta": {"profile": [PROFILE_SCHEDULE]},
        "active": True,
        "actor": [
            {"reference": f"Practitioner/{practitioner_id(vendor, practitioner_key)}"},
            {"reference": f"PractitionerRole/{role_id(vendor, practitioner_key, place_key)}"},
        ],
    }


def practitioner_id(vendor: str, practitioner_key: str) -> str:
    return stable_id(vendor, "pract", practitioner_key)


def role_id(vendor: str, practitioner_key: str, place_key: str) -> str:
    return stable_id(vendor, "role", practitioner_key, place_key)


def schedule_id(
    vendor: str, practitioner_key: str, place_key: str, motive_key: str | None = None
) -> str:
    if motive_key is None:
        return stable_id(vendor, "sched", practitioner_key, place_key)
    return stable_id(vendor, "sched", practitioner_key, place_key, motive_key)


def slot(
    vendor: str,
    schedule_ref: str,
    key: str,
    start: datetime,
    end: datetime,
    zone: ZoneInfo,
    *,
    slot_types: Sequence[str] = ("PUBLIC",),
    consultation: Sequence[str] = ("AMB",),
    appointment_type: str = "ROUTINE",
    motive: str | None = None,
    status: str = "free",
    booking_url: str | None = None,
    booking_query: dict[str, str] | None = None,
) -> FhirJson:
    """A free (or busy) slot of ``schedule_ref`` (a Schedule id). ``key`` is the vendor's slot
    key, or the start instant when the vendor has none."""
    service_type: list[FhirJson] = [
        {"coding": [{"system": ACT_CODE, "code": code}]} for code in consultation
    ]
    if motive:
        service_type.append({"text": motive})
    out: FhirJson = {
        "resourceType": "Slot",
        "id": stable_id(vendor, "slot", key),
        "meta": {
            "profile": [PROFILE_SLOT],
            "security": [{"system": TYPE_CRENEAU, "code": code} for code in slot_types],
        },
        "identifier": [vendor_identifier(vendor, "slot", key)],
        "serviceType": service_type,
        "appointmentType": {"coding": [{"system": APPOINTMENT_REASON, "code": appointment_type}]},
        "schedule": {"reference": f"Schedule/{schedule_ref}"},
        "status": status,
        "start": sas_instant(start, zone),
        "end": sas_instant(end, zone),
    }
    if booking_url:
        # ``stable_id`` makes ids of [A-Za-z0-9.-] only, which urlencode leaves as they are:
        # the same text without its per-call machinery (a hot path of every mapper)
        query = urlencode(booking_query) if booking_query else "slot=" + out["id"]
        out["comment"] = f"{booking_url}{'&' if '?' in booking_url else '?'}{query}"
    return out


def unknown_address() -> FhirJson:
    """The address of a place whose format carries none (HL7 v2 SIU, iCalendar):
    FrLocationAgregateur requires ``line``, ``city`` and ``postalCode``, so each is present as
    a data-absent-reason (``unknown``), never invented."""
    absent = {
        "extension": [
            {
                "url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
                "valueCode": "unknown",
            }
        ]
    }
    return {"line": [None], "_line": [absent], "_city": absent, "_postalCode": absent}
