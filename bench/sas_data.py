"""A realistic SAS data set: N practitioners × D days of 15-minute slots, streamed.

Per practitioner (``i`` = 0..N-1), in this order:

- a ``Practitioner`` (FrPractitionerAgregateur): French name, RPPS ``8`` + 11 digits (the last
  one a Luhn check digit) in ``urn:oid:1.2.250.1.71.4.2.1`` with the IDNPS type;
- one ``PractitionerRole`` per place of consultation (about 1 in 7 practitioners has two), each
  with its ``Location`` contained (FrPractitionerRoleExerciceAgregateur / FrLocationAgregateur),
  an organization identifier (SIRET, IDNST) and a ``+33`` phone number;
- one ``Schedule`` per role whose actors are the Practitioner and the PractitionerRole;
- its ``Slot`` resources, 15 minutes each, over ``days`` days from ``start``: office hours on
  working days (a weekday off, Saturday mornings for some, days split between the two places of
  a two-place practitioner) and, for about 1 in 10, a Saturday-night on-call shift
  (permanence des soins, Saturday 20:00 to Sunday 08:00) which crosses the daylight-saving
  changes of the last Sundays of March and October. A mix of ``free`` and ``busy``.

Slot times are Paris local times in the form the SAS test kit requires
(``YYYY-MM-DDTHH:MM:SS.000+HH:MM``). Shifts are stepped in UTC and converted back, so the
missing hour in March has no slots and the repeated hour in October has two sets (``+02:00``
then ``+01:00``). The default start (Monday 2027-03-22) and 28 days include the March change.

Everything derives from the seed and the practitioner's number (one ``random.Random`` per
practitioner): a data set is reproducible, any practitioner's RPPS and schedule ids can be
computed without generating the others, and nothing is held in memory but one practitioner.

    python bench/sas_data.py --slots 1000 --ndjson /tmp/sas.ndjson   # write NDJSON
    python bench/sas_data.py --practitioners 3 --days 7 --summary     # counts only
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson

PARIS = ZoneInfo("Europe/Paris")
SLOT_MINUTES = 15
STEP = timedelta(minutes=SLOT_MINUTES)

# Profiles (exact strings: the SAS test kit compares meta.profile literally).
SD = "http://sas.fr/fhir/StructureDefinition/"
PRACTITIONER_PROFILE = SD + "FrPractitionerAgregateur"
ROLE_PROFILE = SD + "FrPractitionerRoleExerciceAgregateur"
LOCATION_PROFILE = SD + "FrLocationAgregateur"
SCHEDULE_PROFILE = SD + "FrScheduleAgregateur"
SLOT_PROFILE = SD + "FrSlotAgregateur"

# Systems.
RPPS_SYSTEM = "urn:oid:1.2.250.1.71.4.2.1"  # national practitioner ids (IDNPS)
IDNST_SYSTEM = "urn:oid:1.2.250.1.71.4.2.2"  # national structure ids (FINESS, SIRET...)
FR_V2_0203 = "http://interopsante.org/fhir/CodeSystem/fr-v2-0203"
LOCATION_ID_TYPE = "http://interopsante.org/fhir/CodeSystem/fr-location-identifier-type"
TYPE_CRENEAU = "https://mos.esante.gouv.fr/NOS/TRE_R314-TypeCreneau/FHIR/TRE-R314-TypeCreneau"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
SPECIALITE = (
    "https://mos.esante.gouv.fr/NOS/TRE_R38-SpecialiteOrdinale/FHIR/TRE-R38-SpecialiteOrdinale"
)
APPOINTMENT_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0276"
VENDOR = "https://rdv.agenda-bench.fr"
LOCATION_SYSTEM = VENDOR + "/fhir/sid/lieu"

DEFAULT_START = date(2027, 3, 22)  # a Monday; the clocks go forward on Sunday 2027-03-28
DEFAULT_DAYS = 28
DEFAULT_SEED = 20270322
DEFAULT_FREE = 0.35  # share of free slots (the rest are busy: booked in the agenda)

FAMILY_NAMES = (
    "Martin",
    "Bernard",
    "Thomas",
    "Petit",
    "Robert",
    "Richard",
    "Durand",
    "Dubois",
    "Moreau",
    "Laurent",
    "Simon",
    "Michel",
    "Lefèvre",
    "Leroy",
    "Roux",
    "David",
    "Bertrand",
    "Morel",
    "Fournier",
    "Girard",
    "Bonnet",
    "Dupont",
    "Lambert",
    "Fontaine",
    "Rousseau",
    "Vincent",
    "Muller",
    "Lefebvre",
    "Faure",
    "André",
    "Mercier",
    "Blanc",
    "Guérin",
    "Boyer",
    "Garnier",
    "Chevalier",
    "François",
    "Legrand",
    "Gauthier",
    "Garcia",
    "Perrin",
    "Robin",
    "Clément",
    "Morin",
    "Nicolas",
    "Henry",
    "Roussel",
    "Mathieu",
    "Gautier",
    "Masson",
    "Marchand",
    "Duval",
    "Denis",
    "Dumont",
    "Marie",
    "Lemaire",
    "Noël",
    "Meyer",
    "Dufour",
    "Meunier",
    "Brun",
    "Blanchard",
    "Giraud",
    "Joly",
    "Rivière",
    "Lucas",
    "Brunet",
    "Gaillard",
    "Barbier",
    "Arnaud",
    "Martinez",
    "Gérard",
    "Roche",
    "Renard",
    "Schmitt",
    "Roy",
    "Leroux",
    "Colin",
    "Vidal",
    "Caron",
    "Picard",
    "Roger",
    "Fabre",
    "Aubert",
    "Lemoine",
    "Renaud",
    "Dumas",
    "Lacroix",
    "Olivier",
    "Philippe",
    "Bourgeois",
    "Pierre",
    "Benoît",
    "Rey",
    "Leclerc",
    "Payet",
    "Rolland",
    "Le Gall",
    "Guillot",
    "Jean",
    "Huet",
    "Hoarau",
    "Perrot",
    "Carpentier",
    "Le Goff",
    "Paris",
    "Ménard",
)
GIVEN_NAMES = (
    "Marie",
    "Jean",
    "Pierre",
    "Michel",
    "Philippe",
    "Nathalie",
    "Isabelle",
    "Sylvie",
    "Catherine",
    "Françoise",
    "Christophe",
    "Stéphane",
    "Sandrine",
    "Valérie",
    "Laurent",
    "Frédéric",
    "Céline",
    "Julien",
    "Nicolas",
    "Sébastien",
    "Aurélie",
    "Camille",
    "Julie",
    "Thomas",
    "Claire",
    "Émilie",
    "Mathieu",
    "Antoine",
    "Hélène",
    "Sophie",
    "Élodie",
    "Guillaume",
    "Anne",
    "Caroline",
    "Olivier",
    "Vincent",
    "Laure",
    "Benoît",
    "Agnès",
    "Cécile",
    "Amandine",
    "Maxime",
    "Léa",
    "Chloé",
    "Manon",
    "Hugo",
    "Inès",
    "Lucie",
    "Romain",
    "Pauline",
    "Alexandre",
    "Delphine",
    "Jérôme",
    "Virginie",
    "Damien",
    "Mélanie",
    "Arnaud",
    "Élise",
    "Yann",
    "Gaëlle",
)
STREETS = (
    "rue de la République",
    "avenue Jean Jaurès",
    "place de la Mairie",
    "boulevard Victor Hugo",
    "rue Pasteur",
    "chemin des Vignes",
    "rue du Général de Gaulle",
    "avenue de la Gare",
    "rue des Écoles",
    "allée des Tilleuls",
    "rue Nationale",
    "place du Marché",
    "rue Émile Zola",
    "impasse des Lilas",
    "route de Lyon",
    "quai de la Loire",
)
CITIES = (  # (city, postal code)
    ("Paris", "75011"),
    ("Paris", "75015"),
    ("Paris", "75018"),
    ("Marseille", "13005"),
    ("Lyon", "69003"),
    ("Toulouse", "31400"),
    ("Nice", "06000"),
    ("Nantes", "44000"),
    ("Montpellier", "34000"),
    ("Strasbourg", "67000"),
    ("Bordeaux", "33000"),
    ("Lille", "59000"),
    ("Rennes", "35000"),
    ("Reims", "51100"),
    ("Saint-Étienne", "42000"),
    ("Toulon", "83000"),
    ("Le Havre", "76600"),
    ("Grenoble", "38000"),
    ("Dijon", "21000"),
    ("Angers", "49000"),
    ("Nîmes", "30000"),
    ("Clermont-Ferrand", "63000"),
    ("Aussonne", "31840"),
    ("Brive-la-Gaillarde", "19100"),
    ("Quimper", "29000"),
    ("Pau", "64000"),
    ("Vannes", "56000"),
    ("Albi", "81000"),
    ("Colmar", "68000"),
    ("Annecy", "74000"),
    ("Saint-Denis", "97400"),
    ("Fort-de-France", "97200"),
)
MOTIFS = (
    "Consultation de médecine générale",
    "Visite de contrôle",
    "Soins non programmés",
    "Renouvellement d'ordonnance",
    "Certificat médical",
    "Suivi de maladie chronique",
)
PDSA_MOTIF = "Permanence des soins"
# Médecine générale mostly (SM54), a few other specialties seen on SAS agendas.
SPECIALTIES = ("SM54",) * 12 + ("SM05", "SM26", "SM53", "SM40")


@dataclass(frozen=True)
class Spec:
    """What defines a data set: same spec, same resources, byte for byte."""

    practitioners: int
    days: int = DEFAULT_DAYS
    start: date = DEFAULT_START
    seed: int = DEFAULT_SEED
    free: float = DEFAULT_FREE


# -- identifiers ------------------------------------------------------------------------------


def luhn_digit(digits: str) -> str:
    """The Luhn check digit to append to ``digits`` (as the RPPS number uses)."""
    total = 0
    for n, ch in enumerate(reversed(digits)):
        d = int(ch)
        if n % 2 == 0:  # doubled: the rightmost digit of the payload and every other one
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return str((10 - total % 10) % 10)


def rpps(spec: Spec, i: int) -> str:
    """Prefixed RPPS of practitioner ``i``: ``8`` + ``1`` + 9 digits + Luhn digit."""
    # i -> a bijection on 0..10^9-1 (7_919 and 10^9 are coprime), shifted by the seed.
    body = (i * 7_919 + spec.seed) % 1_000_000_000
    payload = f"1{body:09d}"
    return "8" + payload + luhn_digit(payload)


def practitioner_id(i: int) -> str:
    return f"prac-{i:06d}"


def role_id(i: int, k: int) -> str:
    return f"role-{i:06d}-{k}"


def schedule_id(i: int, k: int) -> str:
    return f"sched-{i:06d}-{k}"


def paris_text(moment: datetime) -> str:
    """``2027-03-22T08:30:00.000+01:00``: Paris local time with the offset of that instant."""
    local = moment.astimezone(PARIS)
    offset = local.utcoffset()
    assert offset is not None
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    hh, mm = divmod(abs(minutes), 60)
    return f"{local:%Y-%m-%dT%H:%M:%S}.000{sign}{hh:02d}:{mm:02d}"


def _slug(text: str) -> str:
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "-".join(plain.lower().replace("'", " ").split())


# -- one practitioner -------------------------------------------------------------------------


@dataclass
class Shift:
    """``days_after`` is 1 when the shift ends the next morning (night on call)."""

    start: time
    end: time
    days_after: int = 0
    pdsa: bool = False


@dataclass
class Practice:
    """Who practitioner ``i`` is and when they work (drawn from their own seeded generator)."""

    number: int
    rpps: str
    family: str
    given: str
    places: int
    specialty: str
    walk_in: bool  # WALKIN (consultation without appointment) instead of ROUTINE
    teleconsultation: float  # share of slots also offered as video consultations (VR)
    home_visits: bool  # HH (visite à domicile)
    snp: float  # share of slots flagged SNP (soins non programmés) for the SAS
    pro: float  # share of slots open to other professionals (PRO)
    week: dict[int, tuple[int, list[Shift]]] = field(default_factory=dict)  # weekday -> (k, ...)
    rng: random.Random = field(default_factory=random.Random)


def practice(spec: Spec, i: int) -> Practice:
    rng = random.Random(spec.seed * 1_000_003 + i)
    family = rng.choice(FAMILY_NAMES)
    if rng.random() < 0.08:  # a double-barrelled name now and then
        family = f"{family}-{rng.choice(FAMILY_NAMES)}"
    p = Practice(
        number=i,
        rpps=rpps(spec, i),
        family=family,
        given=rng.choice(GIVEN_NAMES),
        places=2 if rng.random() < 0.15 else 1,
        specialty=rng.choice(SPECIALTIES),
        walk_in=rng.random() < 0.1,
        teleconsultation=rng.choice((0.0, 0.0, 0.2, 0.5)),
        home_visits=rng.random() < 0.15,
        snp=rng.choice((0.1, 0.2, 0.3)),
        pro=rng.choice((0.0, 0.0, 0.05)),
        rng=rng,
    )
    morning = (time(rng.choice((8, 8, 9)), rng.choice((0, 30))), time(12, rng.choice((0, 30))))
    afternoon = (time(14, rng.choice((0, 0, 30))), time(rng.choice((18, 18, 19, 19, 20)), 0))
    day_off = rng.choice((2, 2, 3, 4, None))  # often Wednesday (2), sometimes none
    saturday = rng.random() < 0.4
    for weekday in range(5):
        if weekday == day_off:
            continue
        place = 1 if p.places == 1 or weekday in (0, 1, 3) else 2
        p.week[weekday] = (place, [Shift(*morning), Shift(*afternoon)])
    if saturday:
        p.week[5] = (p.places, [Shift(time(9, 0), time(12, 0))])
    if rng.random() < 0.1:  # on call on Saturday nights (permanence des soins ambulatoires)
        place, shifts = p.week.get(5, (1, []))
        p.week[5] = (place, [*shifts, Shift(time(20, 0), time(8, 0), 1, pdsa=True)])
    return p


def _local(day: date, at: time) -> datetime:
    # A wall time in the missing hour (none here: shifts start/end outside 02:00-03:00)
    # would be resolved by zoneinfo's fold=0 rule.
    return datetime.combine(day, at, PARIS)


def slot_times(spec: Spec, p: Practice) -> Iterator[tuple[int, bool, datetime, datetime]]:
    """(place, on call, start UTC, end UTC) of every slot of ``p``, in time order."""
    for offset in range(spec.days):
        day = spec.start + timedelta(days=offset)
        plan = p.week.get(day.weekday())
        if plan is None:
            continue
        place, shifts = plan
        for shift in shifts:
            begin = _local(day, shift.start).astimezone(UTC)
            end = _local(day + timedelta(days=shift.days_after), shift.end).astimezone(UTC)
            moment = begin
            while moment + STEP <= end:  # stepped in UTC: right across DST changes
                yield place, shift.pdsa, moment, moment + STEP
                moment += STEP


def count_slots(spec: Spec, first: int = 0, stop: int | None = None) -> int:
    """How many slots practitioners ``first``..``stop``-1 have (all by default); walks the
    calendars, builds no resource."""
    last = spec.practitioners if stop is None else stop
    return sum(sum(1 for _ in slot_times(spec, practice(spec, i))) for i in range(first, last))


def practitioners_for(
    slots: int, days: int = DEFAULT_DAYS, seed: int = DEFAULT_SEED, start: date = DEFAULT_START
) -> int:
    """The number of practitioners that gives about ``slots`` slots over ``days`` days."""
    probe = Spec(practitioners=200, days=days, start=start, seed=seed)
    per_practitioner = count_slots(probe) / probe.practitioners
    return max(1, math.ceil(slots / per_practitioner))


def _address(rng: random.Random) -> dict[str, Any]:
    city, postal = rng.choice(CITIES)
    return {
        "line": [f"{rng.randint(1, 120)} {rng.choice(STREETS)}"],
        "city": city,
        "postalCode": postal,
    }


def _phone(rng: random.Random, postal: str) -> str:
    # Regional landline prefixes: 01 Île-de-France, 02 north-west, 03 north-east, 04 south-east,
    # 05 south-west; overseas numbers are written with their own country codes.
    if postal.startswith("974"):
        return f"+262262{rng.randrange(10**6):06d}"
    if postal.startswith("972"):
        return f"+596596{rng.randrange(10**6):06d}"
    region = {"75": 1, "35": 2, "44": 2, "49": 2, "29": 2, "56": 2, "76": 2, "59": 3}.get(
        postal[:2], 4 if postal[:2] in ("13", "69", "06", "34", "83", "38", "42", "74", "30") else 5
    )
    if postal[:2] in ("67", "68", "51", "21"):
        region = 3
    return f"+33{region}{rng.randrange(10**8):08d}"


def practitioner_resource(p: Practice) -> dict[str, Any]:
    return {
        "resourceType": "Practitioner",
        "id": practitioner_id(p.number),
        "meta": {"profile": [PRACTITIONER_PROFILE]},
        "identifier": [
            {
                "type": {"coding": [{"system": FR_V2_0203, "code": "IDNPS"}]},
                "system": RPPS_SYSTEM,
                "value": p.rpps,
            }
        ],
        "name": [{"family": p.family, "given": [p.given]}],
    }


def role_resource(p: Practice, k: int) -> dict[str, Any]:
    rng = p.rng
    address = _address(rng)
    siret = f"3{rng.randrange(10**14):014d}"
    return {
        "resourceType": "PractitionerRole",
        "id": role_id(p.number, k),
        "meta": {"profile": [ROLE_PROFILE]},
        "contained": [
            {
                "resourceType": "Location",
                "id": f"lieu{k}",
                "meta": {"profile": [LOCATION_PROFILE]},
                "identifier": [
                    {
                        "type": {"coding": [{"system": LOCATION_ID_TYPE, "code": "INTRN"}]},
                        "system": LOCATION_SYSTEM,
                        "value": f"lieu-{p.number:06d}-{k}",
                    }
                ],
                "address": address,
            }
        ],
        "practitioner": {"reference": f"Practitioner/{practitioner_id(p.number)}"},
        "organization": {
            "identifier": {
                "type": {"coding": [{"system": FR_V2_0203, "code": "IDNST"}]},
                "system": IDNST_SYSTEM,
                "value": siret,
            }
        },
        "location": [{"reference": f"#lieu{k}"}],
        "specialty": [{"coding": [{"system": SPECIALITE, "code": p.specialty}]}],
        "telecom": [{"system": "phone", "value": _phone(rng, address["postalCode"])}],
    }


def schedule_resource(p: Practice, k: int) -> dict[str, Any]:
    return {
        "resourceType": "Schedule",
        "id": schedule_id(p.number, k),
        "meta": {"profile": [SCHEDULE_PROFILE]},
        "active": True,
        "actor": [
            {"reference": f"Practitioner/{practitioner_id(p.number)}"},
            {"reference": f"PractitionerRole/{role_id(p.number, k)}"},
        ],
    }


def _coding(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def slot_resources(spec: Spec, p: Practice) -> Iterator[dict[str, Any]]:
    rng = p.rng
    booking = f"{VENDOR}/medecin/{_slug(p.given)}-{_slug(p.family)}-{p.rpps}"
    specialty = [_coding(SPECIALITE, p.specialty)]
    appointment_type = _coding(APPOINTMENT_TYPE, "WALKIN" if p.walk_in else "ROUTINE")
    for place, pdsa, begin, end in slot_times(spec, p):
        security = [{"system": TYPE_CRENEAU, "code": "PUBLIC"}]
        if pdsa or rng.random() < p.snp:
            security.append({"system": TYPE_CRENEAU, "code": "SNP"})
        if rng.random() < p.pro:
            security.append({"system": TYPE_CRENEAU, "code": "PRO"})
        service = [_coding(ACT_CODE, "AMB")]
        if not pdsa and rng.random() < p.teleconsultation:
            service.append(_coding(ACT_CODE, "VR"))
        if not pdsa and p.home_visits and begin.astimezone(PARIS).hour >= 17:
            service.append(_coding(ACT_CODE, "HH"))
        service.append({"text": PDSA_MOTIF if pdsa else rng.choice(MOTIFS)})
        yield {
            "resourceType": "Slot",
            "id": f"slot-{p.number:06d}-{begin:%Y%m%d%H%M}",
            "meta": {"profile": [SLOT_PROFILE], "security": security},
            "serviceType": service,
            "specialty": specialty,
            "appointmentType": appointment_type,
            "schedule": {"reference": f"Schedule/{schedule_id(p.number, place)}"},
            "status": "free" if rng.random() < spec.free else "busy",
            "start": paris_text(begin),
            "end": paris_text(end),
            "comment": f"{booking}?lieu={place}",
        }


def practitioner_resources(spec: Spec, i: int) -> Iterator[dict[str, Any]]:
    """Practitioner, roles, schedules, then slots of practitioner ``i``."""
    p = practice(spec, i)
    yield practitioner_resource(p)
    for k in range(1, p.places + 1):
        yield role_resource(p, k)
    for k in range(1, p.places + 1):
        yield schedule_resource(p, k)
    yield from slot_resources(spec, p)


def resources(spec: Spec, first: int = 0, stop: int | None = None) -> Iterator[dict[str, Any]]:
    """Every resource of practitioners ``first``..``stop``-1 (all by default), streamed."""
    for i in range(first, spec.practitioners if stop is None else stop):
        yield from practitioner_resources(spec, i)


def schedule_ids_of(spec: Spec, i: int) -> list[str]:
    return [schedule_id(i, k) for k in range(1, practice(spec, i).places + 1)]


# -- command line -----------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group(required=True)
    size.add_argument("--practitioners", type=int, help="N practitioners")
    size.add_argument("--slots", type=int, help="about this many slots (N is derived)")
    parser.add_argument("--days", type=int, default=DEFAULT_DAYS)
    parser.add_argument("--start", type=date.fromisoformat, default=DEFAULT_START)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--free", type=float, default=DEFAULT_FREE, help="share of free slots")
    parser.add_argument("--ndjson", type=Path, help="write the resources here (one a line)")
    parser.add_argument("--summary", action="store_true", help="print counts only")
    args = parser.parse_args(argv)
    if args.days < 1 or not 0 <= args.free <= 1:
        parser.error("--days must be at least 1 and --free within 0..1")
    return args


def spec_from_args(args: argparse.Namespace) -> Spec:
    n = args.practitioners or practitioners_for(args.slots, args.days, args.seed, args.start)
    return Spec(practitioners=n, days=args.days, start=args.start, seed=args.seed, free=args.free)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    spec = spec_from_args(args)
    if args.summary or args.ndjson is None:
        print(f"{spec}: {count_slots(spec):,} slots")
        return 0
    with args.ndjson.open("wb") as out:
        for resource in resources(spec):
            out.write(orjson.dumps(resource) + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
