"""The booking page's patient fields: read, checked, and their French messages.

The form asks the minimal patient data of ``booking/patient.py`` (family and given names,
birth date, a phone number to call back, optionally the administrative sex) and the
confirmation checkbox. Each field's problem is one French sentence shown next to the field
and in the error summary; the values typed are given back to the page as they were. The
phone is stored in E.164 (``06 12 34 56 78`` -> ``+33612345678``). Nothing here logs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from fhir_server.booking import patient

# the form's fields, in page order (the ids of their inputs, the keys of the error summary)
FIELDS = ("family", "given", "birth_date", "phone", "gender")
GENDERS = {"": None, "female": "female", "male": "male", "other": "other"}
PHONE_HELP = (
    "Le numéro de téléphone n'est pas valide : 10 chiffres commençant par 0 "
    "(06 12 34 56 78) ou au format international (+33 6 12 34 56 78)."
)
_FRENCH_DATE = re.compile(r"([0-9]{2})/([0-9]{2})/([0-9]{4})")
_NAME_MESSAGES = {
    "family": ("Indiquez le nom du patient.", "Le nom"),
    "given": ("Indiquez le prénom du patient.", "Le prénom"),
}


@dataclass(frozen=True)
class Reading:
    """The form as read: the values to show again, each field's error, the patient data
    when every field is right."""

    values: dict[str, str]
    errors: dict[str, str]
    data: patient.PatientData | None


def read(form: dict[str, str], today: date) -> Reading:
    values = {f: form.get(f, "") for f in FIELDS}
    found: dict[str, str] = {}
    for field in ("family", "given"):
        message = _name_error(field, values[field])
        if message:
            found[field] = message
    born = _birth_date(values["birth_date"], today, found)
    phone = patient.normalise_phone(values["phone"])
    if not values["phone"].strip():
        found["phone"] = "Indiquez un numéro de téléphone pour rappeler le patient."
    elif phone is None:
        found["phone"] = PHONE_HELP
    if values["gender"] not in GENDERS:
        found["gender"] = "Choisissez le sexe dans la liste (ou « Non renseigné »)."
    if form.get("confirm") != "oui":
        found["confirm"] = "Cochez cette case pour confirmer que le patient accepte ce créneau."
    if found or born is None or phone is None:
        return Reading(values, found, None)
    data = patient.PatientData(
        family=values["family"].strip(),
        given=values["given"].strip(),
        birth_date=born,
        phone=phone,
        gender=GENDERS[values["gender"]],
    )
    return Reading(values, {}, data)


def display_name(appointment: dict[str, Any]) -> str | None:
    """``Prénom NOM`` of the Appointment's contained Patient, for the confirmation page."""
    for resource in appointment.get("contained") or ():
        if not isinstance(resource, dict) or resource.get("resourceType") != "Patient":
            continue
        for name in resource.get("name") or ():
            given = " ".join(g for g in name.get("given") or () if isinstance(g, str))
            family = name.get("family")
            text = " ".join(
                p for p in (given, family.upper() if isinstance(family, str) else "") if p
            )
            if text:
                return text
    return None


def _name_error(field: str, value: str) -> str | None:
    empty, label = _NAME_MESSAGES[field]
    problem = patient.name_problem(value)
    if problem is None:
        return None
    if problem == "is empty":
        return empty
    if problem.startswith("is longer"):
        return f"{label} ne doit pas dépasser {patient.MAX_NAME_CHARS} caractères."
    return f"{label} contient des caractères non autorisés."


def _birth_date(text: str, today: date, found: dict[str, str]) -> date | None:
    text = text.strip()
    french = _FRENCH_DATE.fullmatch(text)  # typed where the browser has no date picker
    if french:
        text = f"{french[3]}-{french[2]}-{french[1]}"
    if not text:
        found["birth_date"] = "Indiquez la date de naissance du patient."
        return None
    problem = patient.birth_date_problem(text, today)
    if problem is None:
        return date.fromisoformat(text)
    if problem == "is in the future":
        found["birth_date"] = "La date de naissance ne peut pas être dans le futur."
    elif problem.startswith("is more than"):
        found["birth_date"] = (
            f"La date de naissance est trop ancienne (plus de {patient.MAX_AGE_YEARS} ans)."
        )
    else:
        found["birth_date"] = (
            "La date de naissance doit être une date complète et valide, par exemple 27/04/2001."
        )
    return None
