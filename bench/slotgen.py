"""Realistic SAS slots for the benchmarks (FrSlotAgregateur shape, our own values).

Times are Paris local times written as the SAS test kit wants them
(``YYYY-MM-DDTHH:MM:SS.000+HH:MM``), the offset taken from the tz database so daylight
saving is right. Everything derives from a seeded ``random.Random``: a run is reproducible.
"""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson

PARIS = ZoneInfo("Europe/Paris")
FR_SLOT_AGREGATEUR = "http://sas.fr/fhir/StructureDefinition/FrSlotAgregateur"
TYPE_CRENEAU = "https://mos.esante.gouv.fr/NOS/TRE_R314-TypeCreneau/FHIR/TRE-R314-TypeCreneau"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
SPECIALITE = (
    "https://mos.esante.gouv.fr/NOS/TRE_R38-SpecialiteOrdinale/FHIR/TRE-R38-SpecialiteOrdinale"
)
APPOINTMENT_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0276"
VENDOR_SLOT_SYSTEM = "https://agenda.bench.example.fr/fhir/sid/creneau"

# Médecine générale mostly, a few other specialties seen on SAS agendas.
SPECIALTIES = ["SM54", "SM54", "SM54", "SM05", "SM26", "SM53"]
SERVICE_TEXTS = ["Consultation de médecine générale", "Visite de contrôle", "Soins non programmés"]
FIRST_DAY = datetime(2027, 1, 11, tzinfo=PARIS)  # a Monday in winter (+01:00)


def paris_time(moment: datetime) -> str:
    """``2027-01-11T09:00:00.000+01:00``."""
    local = moment.astimezone(PARIS)
    offset = local.strftime("%z")
    return f"{local:%Y-%m-%dT%H:%M:%S}.000{offset[:3]}:{offset[3:]}"


def slot(rng: random.Random, number: int, *, schedules: int = 500) -> dict[str, Any]:
    """One free slot of a GP's agenda: 15 or 20 minutes, weekdays 08:00-19:00."""
    day = FIRST_DAY + timedelta(days=rng.randrange(14))
    if day.weekday() >= 5:
        day += timedelta(days=7 - day.weekday())
    minutes = rng.choice((15, 20))
    start = day.replace(hour=8) + timedelta(minutes=minutes * rng.randrange(11 * 60 // minutes))
    schedule = rng.randrange(schedules)
    security = [{"system": TYPE_CRENEAU, "code": "PUBLIC"}]
    if rng.random() < 0.3:
        security.append({"system": TYPE_CRENEAU, "code": "SNP"})
    service_type: list[dict[str, Any]] = [{"coding": [{"system": ACT_CODE, "code": "AMB"}]}]
    if rng.random() < 0.4:
        service_type.append({"coding": [{"system": ACT_CODE, "code": "VR"}]})
    service_type.append({"text": rng.choice(SERVICE_TEXTS)})
    return {
        "resourceType": "Slot",
        "meta": {"profile": [FR_SLOT_AGREGATEUR], "security": security},
        "identifier": [{"system": VENDOR_SLOT_SYSTEM, "value": f"crn-{schedule:05d}-{number:09d}"}],
        "serviceType": service_type,
        "specialty": [{"coding": [{"system": SPECIALITE, "code": rng.choice(SPECIALTIES)}]}],
        "appointmentType": {"coding": [{"system": APPOINTMENT_TYPE, "code": "ROUTINE"}]},
        "schedule": {"reference": f"Schedule/bench-schedule-{schedule:05d}"},
        "status": "free",
        "start": paris_time(start),
        "end": paris_time(start + timedelta(minutes=minutes)),
        "comment": f"https://agenda.bench.example.fr/rdv/{schedule:05d}/{number:09d}?origin=sas",
    }


def slot_bytes(rng: random.Random, number: int) -> bytes:
    return orjson.dumps(slot(rng, number))


def transaction_bytes(rng: random.Random, first_number: int, size: int) -> bytes:
    """A transaction Bundle of ``size`` Slot creates (``urn:uuid:`` full URLs)."""
    entries = [
        {
            "fullUrl": f"urn:uuid:{uuid.UUID(int=rng.getrandbits(128), version=4)}",
            "resource": slot(rng, first_number + i),
            "request": {"method": "POST", "url": "Slot"},
        }
        for i in range(size)
    ]
    return orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries})
