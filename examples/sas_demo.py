"""A small SAS demo data set, as a FHIR R4 transaction Bundle.

Everything here is invented: people, structures, identifiers (RPPS, FINESS, SIRET),
addresses, phone numbers (ARCEP ranges reserved for fiction) and e-mails (example.org).
The shapes follow the SAS guide 1.1.0 examples (ans.fhir.fr.sas#1.1.0):

* ``ps-martin``: a GP with one consultation place (Practitioner, PractitionerRole with a
  contained Location, Schedule, Slots);
* ``ps-durand``: a GP with two places (two PractitionerRoles and two Schedules);
* ``ps-lefebvre``: a GP offering slots through two CPTS (Organization + HealthcareService
  each; the Slot's serviceType carries the R5 ``extension-Slot.serviceType`` reference);
* ``sos-estuaire``: a SOS Médecins structure with two consultation centres (Location with
  managingOrganization, one Schedule per Location whose actor is the Location).

Slots are 15 minutes long, in Europe/Paris local time written ``YYYY-MM-DDTHH:MM:SS.000+HH:MM``
(the form the SAS test kit requires), generated for ``days`` days from ``now``. They are built
by stepping through UTC, so a window never yields a local time that does not exist (the March
gap) and the repeated October hour gets its two distinct offsets.

Usage: ``python examples/sas_demo.py [--days N] [--out FILE]`` (stdout by default).
"""

from __future__ import annotations

import argparse
import json
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

FhirJson = dict[str, Any]

PARIS = ZoneInfo("Europe/Paris")
SLOT_LENGTH = timedelta(minutes=15)

# Identifier systems (SAS guide): national PS identifier (IDNPS) and structure identifier (IDNST).
RPPS_SYSTEM = "urn:oid:1.2.250.1.71.4.2.1"
IDNST_SYSTEM = "urn:oid:1.2.250.1.71.4.2.2"
# Our own (invented) identifier namespace for consultation places, as an agenda vendor would have.
PLACE_ID_SYSTEM = "https://agenda.example.org/fhir/sid/lieu"
BOOKING_BASE = "https://agenda.example.org"

# Code systems.
FR_V2_0203 = "http://interopsante.org/fhir/CodeSystem/fr-v2-0203"
FR_LOCATION_ID_TYPE = "http://interopsante.org/fhir/CodeSystem/fr-location-identifier-type"
TYPE_CRENEAU = "https://mos.esante.gouv.fr/NOS/TRE_R314-TypeCreneau/FHIR/TRE-R314-TypeCreneau"
SPECIALITE = (
    "https://mos.esante.gouv.fr/NOS/TRE_R38-SpecialiteOrdinale/FHIR/TRE-R38-SpecialiteOrdinale"
)
CATEGORIE_ETAB = "https://mos.esante.gouv.fr/NOS/TRE_R66-CategorieEtablissement/FHIR/TRE-R66-CategorieEtablissement"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
APPOINTMENT_REASON = "http://terminology.hl7.org/CodeSystem/v2-0276"
EXT_SLOT_SERVICE_TYPE = "http://hl7.org/fhir/5.0/StructureDefinition/extension-Slot.serviceType"

# Profiles (canonicals exactly as in the SAS 1.1.0 package: the test kit matches meta.profile
# by exact string, and the two URL styles really coexist).
_SAS = "http://sas.fr/fhir/StructureDefinition/"
_IG = "https://interop.esante.gouv.fr/ig/fhir/sas/StructureDefinition/"
PROFILE_PRACTITIONER = _SAS + "FrPractitionerAgregateur"
PROFILE_PRACTITIONER_ROLE = _SAS + "FrPractitionerRoleExerciceAgregateur"
PROFILE_PS_LOCATION = _SAS + "FrLocationAgregateur"
PROFILE_SCHEDULE = _SAS + "FrScheduleAgregateur"
PROFILE_SLOT = _SAS + "FrSlotAgregateur"
PROFILE_CPTS_SLOT = _IG + "sas-cpts-slot-aggregator"
PROFILE_CPTS_ORGANIZATION = _IG + "sas-cpts-organization-aggregator"
PROFILE_CPTS_HEALTHCARE_SERVICE = _IG + "sas-cpts-healthcareservice-aggregator"
PROFILE_SOS_ORGANIZATION = _IG + "sas-sos-organization-aggregator"
PROFILE_SOS_LOCATION = _IG + "sas-sos-location-aggregator"
PROFILE_SOS_SCHEDULE = _IG + "sas-sos-schedule-aggregator"
PROFILE_SOS_SLOT = _IG + "sas-sos-slot-aggregator"
# The SAS Slot profiles fix status to "free" (they describe search answers), so a busy slot
# cannot claim them; it claims the FR Core Slot profile they all derive from.
PROFILE_FR_SLOT = "http://interopsante.org/fhir/StructureDefinition/FrSlot"
PROFILE_REGULATOR = _IG + "FrPractitionerRegul"
SAS_PLATFORM_SOURCE = "urn:oid:1.2.250.1.213.3.6"  # meta.source of the SAS platform's accounts

# Regulator accounts (INT_R02) of the demo: the fictional professionals of the local identity
# provider (`fhir-server dev-idp`) who may sign in as regulators. (login, national id, given,
# family). The dev IdP's other users have no account: they sign in but are refused the API.
REGULATORS = (("regulateur-fictif", "819999000011", "Camille", "Fictif"),)

MON, TUE, WED, THU, FRI, SAT, SUN = range(7)
WEEKDAYS = (MON, TUE, WED, THU, FRI)


def _t(hhmm: str) -> time:
    return time.fromisoformat(hhmm)


@dataclass(frozen=True)
class Opening:
    """A weekly window during which an agenda offers 15-minute slots (end on the same day)."""

    weekdays: tuple[int, ...]  # datetime.weekday(): 0 = Monday
    start: time
    end: time
    consultation: tuple[str, ...] = (
        "AMB",
    )  # v3-ActCode: AMB cabinet, VR téléconsultation, HH domicile
    security: tuple[str, ...] = ("PUBLIC",)  # TRE_R314 slot types: who may book
    appointment_type: str = "ROUTINE"  # ROUTINE bookable, WALKIN without appointment
    cpts: tuple[str, ...] = ()  # HealthcareService ids the slot is offered through
    motif: str | None = None  # free-text motive: serviceType.text only, never coded


@dataclass(frozen=True)
class Address:
    line: str
    city: str
    postal_code: str
    latitude: float
    longitude: float


@dataclass(frozen=True)
class Place:
    """One consultation place of a GP: a PractitionerRole, its contained Location, a Schedule."""

    id: str  # id of the PractitionerRole and of the Schedule
    name: str
    address: Address
    phone: str
    organization_id: str  # IDNST of the practice: FINESS "1…", SIRET "3…" or RPPS rang "4…"
    openings: tuple[Opening, ...]


@dataclass(frozen=True)
class Doctor:
    id: str
    rpps: str  # 11 digits; the identifier value is "8" + RPPS
    family: str
    given: str
    email: str
    places: tuple[Place, ...]


@dataclass(frozen=True)
class Structure:
    """A CPTS or a SOS Médecins association."""

    id: str
    identifier: str  # prefixed IDNST: "1" + FINESS (CPTS) or "3" + SIRET (SOS)
    name: str
    phone: str
    email: str
    address: Address


@dataclass(frozen=True)
class SosCentre:
    """A SOS Médecins fixed consultation place: a Location and its Schedule (same id)."""

    id: str
    name: str
    address: Address
    phone: str
    openings: tuple[Opening, ...]


# --- The data set ------------------------------------------------------------------------------
# Phone numbers: 02 61 91 xx xx is reserved by ARCEP for fiction (western France).

CPTS_ERDRE = Structure(
    id="cpts-erdre",
    identifier="1440999019",
    name="CPTS Erdre et Cens",
    phone="+33261910100",
    email="contact@cpts-erdre.example.org",
    address=Address("5 place du Marché", "Carquefou", "44470", 47.2975, -1.4921),
)
CPTS_SEVRE = Structure(
    id="cpts-sevre",
    identifier="1440999027",
    name="CPTS Sèvre et Goulaine",
    phone="+33261910200",
    email="contact@cpts-sevre.example.org",
    address=Address("18 rue des Vignerons", "Vertou", "44120", 47.1689, -1.4697),
)
CPTS_STRUCTURES = (CPTS_ERDRE, CPTS_SEVRE)

SOS_ESTUAIRE = Structure(
    id="sos-estuaire",
    identifier="399944001900019",
    name="SOS Médecins Loire Estuaire",
    phone="+33261910300",
    email="regulation@sos-estuaire.example.org",
    address=Address("40 boulevard des Anglais", "Nantes", "44100", 47.2226, -1.5833),
)

SOS_CENTRES = (
    SosCentre(
        id="sos-estuaire-beaulieu",
        name="Centre de consultation SOS Médecins Beaulieu",
        address=Address("7 rue de l'Île Beaulieu", "Nantes", "44200", 47.2071, -1.5302),
        phone="+33261910310",
        openings=(
            Opening(WEEKDAYS, _t("19:00"), _t("23:00"), security=("PUBLIC", "SNP")),
            Opening((SAT,), _t("14:00"), _t("20:00"), security=("PUBLIC", "SNP")),
            Opening((SUN,), _t("09:00"), _t("13:00"), security=("PUBLIC", "SNP")),
            Opening((SUN,), _t("15:00"), _t("20:00"), security=("PUBLIC", "SNP")),
        ),
    ),
    SosCentre(
        id="sos-estuaire-herblain",
        name="Centre de consultation SOS Médecins Saint-Herblain",
        address=Address("22 rue de la Bourgonnière", "Saint-Herblain", "44800", 47.2182, -1.6421),
        phone="+33261910320",
        openings=(
            # Walk-in evening consultations.
            Opening(WEEKDAYS, _t("20:00"), _t("23:00"), appointment_type="WALKIN"),
            # Weekend nights, home visits for regulators only: these windows straddle the
            # daylight-saving changes (Sunday 02:00-03:00 missing in March, twice in October).
            Opening((SAT, SUN), _t("00:00"), _t("06:00"), consultation=("HH",), security=("SNP",)),
        ),
    ),
)

DOCTORS = (
    Doctor(
        id="ps-martin",
        rpps="10999900011",
        family="Martin",
        given="Claire",
        email="claire.martin@example.org",
        places=(
            Place(
                id="ps-martin",
                name="Cabinet du Dr Claire Martin",
                address=Address("14 rue des Tilleuls", "Saint-Herblain", "44800", 47.2245, -1.6262),
                phone="+33261910401",
                organization_id="410999900011001",
                openings=(
                    Opening(WEEKDAYS, _t("08:00"), _t("12:00")),
                    Opening(WEEKDAYS, _t("14:00"), _t("18:00")),
                    # End of day kept for the regulators (soins non programmés), also by video.
                    Opening(
                        WEEKDAYS,
                        _t("18:00"),
                        _t("19:00"),
                        consultation=("AMB", "VR"),
                        security=("SNP",),
                        motif="Consultation non programmée",
                    ),
                ),
            ),
        ),
    ),
    Doctor(
        id="ps-durand",
        rpps="10999900029",
        family="Durand",
        given="Thomas",
        email="thomas.durand@example.org",
        places=(
            Place(
                id="ps-durand-nantes",
                name="Cabinet médical Zola",
                address=Address("3 boulevard Émile Zola", "Nantes", "44100", 47.2150, -1.5820),
                phone="+33261910502",
                organization_id="410999900029001",
                openings=(Opening(WEEKDAYS, _t("08:30"), _t("12:30")),),
            ),
            Place(
                id="ps-durand-reze",
                name="Maison de santé pluriprofessionnelle de Rezé",
                address=Address("27 rue Jean Jaurès", "Rezé", "44400", 47.1912, -1.5693),
                phone="+33261910503",
                organization_id="1440999035",
                openings=(
                    Opening((MON, TUE, THU, FRI), _t("14:00"), _t("18:00")),
                    Opening((WED,), _t("14:00"), _t("17:00"), consultation=("VR",)),
                ),
            ),
        ),
    ),
    Doctor(
        id="ps-lefebvre",
        rpps="10999900037",
        family="Lefebvre",
        given="Nadia",
        email="nadia.lefebvre@example.org",
        places=(
            Place(
                id="ps-lefebvre",
                name="Cabinet du Dr Nadia Lefebvre",
                address=Address("9 avenue de la Gare", "Carquefou", "44470", 47.2961, -1.4886),
                phone="+33261910604",
                organization_id="410999900037001",
                openings=(
                    # Slots offered through the CPTS only; Saturday ones through both.
                    Opening(
                        (MON, WED, FRI),
                        _t("17:00"),
                        _t("20:00"),
                        security=("CPTS",),
                        cpts=(CPTS_ERDRE.id,),
                    ),
                    Opening(
                        (TUE, THU),
                        _t("17:00"),
                        _t("20:00"),
                        security=("CPTS",),
                        cpts=(CPTS_SEVRE.id,),
                    ),
                    Opening(
                        (SAT,),
                        _t("09:00"),
                        _t("12:00"),
                        security=("CPTS",),
                        cpts=(CPTS_ERDRE.id, CPTS_SEVRE.id),
                    ),
                ),
            ),
        ),
    ),
)


# --- Time --------------------------------------------------------------------------------------


def instant(moment: datetime) -> str:
    """Paris local time as ``YYYY-MM-DDTHH:MM:SS.000+HH:MM`` (the SAS test kit's form)."""
    return moment.astimezone(PARIS).isoformat(timespec="milliseconds")


def _slot_starts(day: date, opening: Opening) -> Iterator[datetime]:
    """UTC starts of the 15-minute slots of ``opening`` on local ``day``.

    Stepping in UTC (not in wall-clock time) is what keeps daylight-saving changes right:
    nothing falls in the missing March hour and the repeated October hour is there twice.
    """
    # combine() with fold=0 maps a bound inside the March gap onto the real instant after it.
    start = datetime.combine(day, opening.start, PARIS).astimezone(UTC)
    end = datetime.combine(day, opening.end, PARIS).astimezone(UTC)
    moment = start
    while moment + SLOT_LENGTH <= end:
        yield moment
        moment += SLOT_LENGTH


def _is_busy(slot_id: str) -> bool:
    # Stable pseudo-random (crc32, not hash(): that one is salted per process): ~1 slot in 4.
    return zlib.crc32(slot_id.encode()) % 4 == 0


# --- Resources ---------------------------------------------------------------------------------


def _meta(profile: str) -> FhirJson:
    return {"profile": [profile]}


def _address(address: Address) -> FhirJson:
    return {"line": [address.line], "city": address.city, "postalCode": address.postal_code}


def _position(address: Address) -> FhirJson:
    return {"longitude": address.longitude, "latitude": address.latitude}


def _phone(value: str) -> FhirJson:
    return {"system": "phone", "value": value, "use": "work"}


def _email(value: str) -> FhirJson:
    return {"system": "email", "value": value, "use": "work"}


def _idnst(value: str, type_system: str) -> FhirJson:
    # CPTS/SOS Organizations type it with fr-location-identifier-type, PractitionerRole's
    # organization with fr-v2-0203: that is how the SAS 1.1.0 snapshots pin it.
    return {
        "type": {"coding": [{"system": type_system, "code": "IDNST"}]},
        "system": IDNST_SYSTEM,
        "value": value,
    }


def _place_identifier(value: str) -> FhirJson:
    return {
        "type": {"coding": [{"system": FR_LOCATION_ID_TYPE, "code": "INTRN"}]},
        "system": PLACE_ID_SYSTEM,
        "value": value,
    }


def _organization(structure: Structure, profile: str) -> FhirJson:
    return {
        "resourceType": "Organization",
        "id": structure.id,
        "meta": _meta(profile),
        "identifier": [_idnst(structure.identifier, FR_LOCATION_ID_TYPE)],
        "active": True,
        "name": structure.name,
        "telecom": [_phone(structure.phone), _email(structure.email)],
        "address": [_address(structure.address)],
    }


def _healthcare_service(cpts: Structure) -> FhirJson:
    # One HealthcareService per CPTS, same id as its Organization.
    return {
        "resourceType": "HealthcareService",
        "id": cpts.id,
        "meta": _meta(PROFILE_CPTS_HEALTHCARE_SERVICE),
        "active": True,
        "providedBy": {"reference": f"Organization/{cpts.id}"},
        "name": f"Soins non programmés - {cpts.name}",
        "telecom": [_phone(cpts.phone)],
    }


def _sos_location(centre: SosCentre, organization: Structure) -> FhirJson:
    return {
        "resourceType": "Location",
        "id": centre.id,
        "meta": _meta(PROFILE_SOS_LOCATION),
        "identifier": [_place_identifier(centre.id)],
        "status": "active",
        "name": centre.name,
        "telecom": [_phone(centre.phone)],
        "address": _address(centre.address),
        "position": _position(centre.address),
        "managingOrganization": {"reference": f"Organization/{organization.id}"},
        "hoursOfOperation": _hours_of_operation(centre.openings),
    }


_DAY_CODES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _hours_of_operation(openings: tuple[Opening, ...]) -> list[FhirJson]:
    return [
        {
            "daysOfWeek": [_DAY_CODES[d] for d in opening.weekdays],
            "openingTime": opening.start.isoformat(timespec="seconds"),
            "closingTime": opening.end.isoformat(timespec="seconds"),
        }
        for opening in openings
    ]


def _practitioner(doctor: Doctor) -> FhirJson:
    return {
        "resourceType": "Practitioner",
        "id": doctor.id,
        "meta": _meta(PROFILE_PRACTITIONER),
        "identifier": [
            {
                "type": {"coding": [{"system": FR_V2_0203, "code": "IDNPS"}]},
                "system": RPPS_SYSTEM,
                "value": "8" + doctor.rpps,
            }
        ],
        "active": True,
        "name": [{"use": "official", "family": doctor.family, "given": [doctor.given]}],
        "telecom": [_email(doctor.email)],
    }


def _practitioner_role(doctor: Doctor, place: Place) -> FhirJson:
    location_id = f"lieu-{place.id}"
    return {
        "resourceType": "PractitionerRole",
        "id": place.id,
        "meta": _meta(PROFILE_PRACTITIONER_ROLE),
        # The SAS guide wants the consultation place contained, referenced as "#id".
        "contained": [
            {
                "resourceType": "Location",
                "id": location_id,
                "meta": _meta(PROFILE_PS_LOCATION),
                "identifier": [_place_identifier(place.id)],
                "status": "active",
                "name": place.name,
                "address": _address(place.address),
                "position": _position(place.address),
            }
        ],
        "active": True,
        "practitioner": {"reference": f"Practitioner/{doctor.id}"},
        # A logical reference: the practice is known by its identifier only.
        "organization": {"identifier": _idnst(place.organization_id, FR_V2_0203)},
        "location": [{"reference": f"#{location_id}"}],
        "telecom": [_phone(place.phone)],
    }


def _ps_schedule(doctor: Doctor, place: Place) -> FhirJson:
    return {
        "resourceType": "Schedule",
        "id": place.id,
        "meta": _meta(PROFILE_SCHEDULE),
        "active": True,
        "actor": [
            {"reference": f"Practitioner/{doctor.id}"},
            {"reference": f"PractitionerRole/{place.id}"},
        ],
    }


def _sos_schedule(centre: SosCentre) -> FhirJson:
    return {
        "resourceType": "Schedule",
        "id": centre.id,
        "meta": _meta(PROFILE_SOS_SCHEDULE),
        "active": True,
        "actor": [{"reference": f"Location/{centre.id}"}],
    }


def _coded(system: str, code: str) -> FhirJson:
    return {"coding": [{"system": system, "code": code}]}


def _slot(
    schedule_id: str,
    start: datetime,
    opening: Opening,
    free_profile: str,
    comment: str,
    with_specialty: bool,
) -> FhirJson:
    slot_id = f"{schedule_id}-{start:%Y%m%dT%H%MZ}"  # UTC in the id: unique even in October
    busy = _is_busy(slot_id)
    service_type: list[FhirJson] = [_coded(ACT_CODE, code) for code in opening.consultation]
    for service_id in opening.cpts:
        # Exactly the CPTS examples' shape: TRE_R66 604 plus the R5 serviceType reference.
        service_type.append(
            {
                "extension": [
                    {
                        "url": EXT_SLOT_SERVICE_TYPE,
                        "valueReference": {"reference": f"HealthcareService/{service_id}"},
                    }
                ],
                "coding": [{"system": CATEGORIE_ETAB, "code": "604"}],
            }
        )
    if opening.motif:
        service_type.append({"text": opening.motif})
    slot: FhirJson = {
        "resourceType": "Slot",
        "id": slot_id,
        "meta": {
            "profile": [PROFILE_FR_SLOT if busy else free_profile],
            "security": [{"system": TYPE_CRENEAU, "code": code} for code in opening.security],
        },
        "serviceType": service_type,
    }
    if with_specialty:
        slot["specialty"] = [_coded(SPECIALITE, "SM54")]  # médecine générale
    slot.update(
        {
            "appointmentType": _coded(APPOINTMENT_REASON, opening.appointment_type),
            "schedule": {"reference": f"Schedule/{schedule_id}"},
            "status": "busy" if busy else "free",
            "start": instant(start),
            "end": instant(start + SLOT_LENGTH),
            # The booking link the regulator opens; it already has a "?" because the SAS
            # platform appends "&origin=sas".
            "comment": comment,
        }
    )
    return slot


def _slots(
    schedule_id: str,
    openings: tuple[Opening, ...],
    comment: str,
    sos: bool,
    since: datetime,
    until: datetime,
) -> list[FhirJson]:
    slots: list[FhirJson] = []
    first_day = since.astimezone(PARIS).date()
    last_day = until.astimezone(PARIS).date()
    day = first_day
    while day <= last_day:
        for opening in openings:
            if day.weekday() not in opening.weekdays:
                continue
            if sos:
                profile = PROFILE_SOS_SLOT
            else:
                profile = PROFILE_CPTS_SLOT if opening.cpts else PROFILE_SLOT
            for start in _slot_starts(day, opening):
                if since <= start and start + SLOT_LENGTH <= until:
                    slots.append(_slot(schedule_id, start, opening, profile, comment, not sos))
        day += timedelta(days=1)
    slots.sort(key=lambda slot: slot["id"])
    return slots


# --- Bundle ------------------------------------------------------------------------------------


def _regulator(login: str, national_id: str, given: str, family: str) -> FhirJson:
    return {
        "resourceType": "Practitioner",
        "id": f"regul-{login}",
        "meta": {"profile": [PROFILE_REGULATOR], "source": SAS_PLATFORM_SOURCE},
        "identifier": [
            {
                "type": {"coding": [{"system": FR_V2_0203, "code": "IDNPS"}]},
                "system": RPPS_SYSTEM,
                "value": national_id,
            }
        ],
        "active": True,
        "name": [{"family": family, "given": [given]}],
        "telecom": [_email(f"{login}@example.org")],
    }


def build_regulator_bundle() -> dict[str, Any]:
    """The demo's regulator accounts (FrPractitionerRegul), as the SAS platform keeps them on
    a regional server: a transaction Bundle of ``PUT Practitioner/id`` entries."""
    return _transaction([_regulator(*regulator) for regulator in REGULATORS])


def _transaction(resources: list[FhirJson]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": resource,
                "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"},
            }
            for resource in resources
        ],
    }


def build_demo_bundle(now: datetime | None = None, days: int = 3) -> dict[str, Any]:
    """The demo data set as a transaction Bundle of ``PUT Type/id`` entries (idempotent).

    ``now`` defaults to the current time; a naive ``now`` is taken as Paris local time. Slots
    cover ``[now, now + days × 24 h)``. The result is deterministic for a given ``now``.
    """
    if days < 0:
        raise ValueError("days must be >= 0")
    if now is None:
        now = datetime.now(PARIS)
    elif now.tzinfo is None:
        now = now.replace(tzinfo=PARIS)
    # Compare in UTC: aware datetimes sharing a tzinfo compare by wall time, which is wrong
    # across daylight-saving changes.
    since = now.astimezone(UTC)
    until = since + timedelta(days=days)

    resources: list[FhirJson] = []
    resources += [_organization(cpts, PROFILE_CPTS_ORGANIZATION) for cpts in CPTS_STRUCTURES]
    resources.append(_organization(SOS_ESTUAIRE, PROFILE_SOS_ORGANIZATION))
    resources += [_healthcare_service(cpts) for cpts in CPTS_STRUCTURES]
    resources += [_sos_location(centre, SOS_ESTUAIRE) for centre in SOS_CENTRES]
    resources += [_practitioner(doctor) for doctor in DOCTORS]
    resources += [
        _practitioner_role(doctor, place) for doctor in DOCTORS for place in doctor.places
    ]
    resources += [_ps_schedule(doctor, place) for doctor in DOCTORS for place in doctor.places]
    resources += [_sos_schedule(centre) for centre in SOS_CENTRES]
    for doctor in DOCTORS:
        for place in doctor.places:
            comment = f"{BOOKING_BASE}/rdv/{doctor.id}?lieu={place.id}"
            resources += _slots(place.id, place.openings, comment, False, since, until)
    for centre in SOS_CENTRES:
        comment = f"{BOOKING_BASE}/sos/{SOS_ESTUAIRE.id}?lieu={centre.id}"
        resources += _slots(centre.id, centre.openings, comment, True, since, until)
    return _transaction(resources)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the SAS demo transaction Bundle (JSON).")
    parser.add_argument("--days", type=int, default=3, help="days of slots from now (default 3)")
    parser.add_argument("--out", type=Path, help="output file (default: stdout)")
    parser.add_argument(
        "--regulators",
        action="store_true",
        help="write the regulator accounts (FrPractitionerRegul) instead of the agendas",
    )
    args = parser.parse_args(argv)
    bundle = build_regulator_bundle() if args.regulators else build_demo_bundle(days=args.days)
    text = json.dumps(bundle, ensure_ascii=False, indent=2) + "\n"
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
