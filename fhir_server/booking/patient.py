"""The minimal patient data an Appointment booked here may carry (no I/O).

The practitioner who receives the appointment must know whom to expect and how to call
back; nothing more is asked or kept (docs/booking.md, "Patient data"). The data is ONE
contained ``Patient`` (``id`` ``patient``) referenced by a participant (``#patient``),
holding only:

- ``name``: one HumanName with ``family`` and ``given`` (one or more), nothing else;
- ``birthDate``: a full date (YYYY-MM-DD), not in the future, at most ``MAX_AGE_YEARS`` ago;
- ``telecom``: one ContactPoint ``system: phone`` whose ``value`` is E.164 (``+33612345678``;
  the booking page turns ``06 12 34 56 78`` into it, the API stores what it is sent, so it
  must be written so already);
- ``gender`` (optional): the R4 administrative gender code.

Anything else (another contained resource, another element, a second name or phone, a
participant pointing at an unknown ``#`` id) is a 422 naming each offending element; nothing
is dropped silently. The diagnostics never repeat the values (they may reach the logs).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from fhir_server.core import errors
from fhir_server.core.errors import Issue

PATIENT_ID = "patient"
REFERENCE = f"#{PATIENT_ID}"
MAX_AGE_YEARS = 130
MAX_NAME_CHARS = 100
GENDERS = frozenset({"male", "female", "other", "unknown"})
# the elements a contained Patient may have: the minimal set, and what makes it a resource
ALLOWED = frozenset({"resourceType", "id", "name", "birthDate", "telecom", "gender"})
REQUIRED = ("name", "birthDate", "telecom")
NAME_ALLOWED = frozenset({"family", "given"})
TELECOM_ALLOWED = frozenset({"system", "value"})
_E164 = re.compile(r"\+[1-9][0-9]{7,14}")
_FRENCH = re.compile(r"\+33[1-9][0-9]{8}")  # +33 then the 9 digits after the national 0
_NATIONAL = re.compile(r"0[1-9][0-9]{8}")
_SEPARATORS = re.compile(r"[ .\-]")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


@dataclass(frozen=True)
class PatientData:
    """What the booking page collects, already checked."""

    family: str
    given: str
    birth_date: date
    phone: str  # E.164
    gender: str | None = None

    def resource(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "resourceType": "Patient",
            "id": PATIENT_ID,
            "name": [{"family": self.family, "given": [self.given]}],
            "birthDate": self.birth_date.isoformat(),
            "telecom": [{"system": "phone", "value": self.phone}],
        }
        if self.gender:
            out["gender"] = self.gender
        return out

    @staticmethod
    def participant() -> dict[str, Any]:
        return {
            "actor": {"reference": REFERENCE, "type": "Patient"},
            "required": "required",
            "status": "accepted",
        }


def normalise_phone(text: str) -> str | None:
    """A phone number as typed (``06 12 34 56 78``, ``+33 6 12 34 56 78``, ``+44 20 …``)
    in E.164, or None when it is not a plausible number."""
    compact = _SEPARATORS.sub("", text.strip())
    if _NATIONAL.fullmatch(compact):
        return "+33" + compact[1:]
    if compact.startswith("+33"):
        return compact if _FRENCH.fullmatch(compact) else None
    return compact if _E164.fullmatch(compact) else None


def phone_problem(value: str) -> str | None:
    """Why a stored phone value is refused (None: it is E.164)."""
    if not value:
        return "is empty"
    if normalise_phone(value) != value:
        return "is not a phone number in E.164 form (e.g. +33612345678)"
    return None


def birth_date_problem(text: str, today: date) -> str | None:
    """Why a birth date is refused (None: a full date, not in the future, not too old)."""
    if not _DATE.fullmatch(text):
        return "is not a full date (YYYY-MM-DD)"
    try:
        born = date.fromisoformat(text)
    except ValueError:
        return "is not a valid date"
    if born > today:
        return "is in the future"
    if born.year < today.year - MAX_AGE_YEARS:
        return f"is more than {MAX_AGE_YEARS} years ago"
    return None


def name_problem(value: Any) -> str | None:
    """Why a family or given name is refused (None: a non-blank string, not too long)."""
    if not isinstance(value, str) or not value.strip():
        return "is empty"
    if len(value) > MAX_NAME_CHARS:
        return f"is longer than {MAX_NAME_CHARS} characters"
    if any(ord(c) < 32 for c in value):
        return "contains control characters"
    return None


def check(appointment: dict[str, Any], today: date) -> None:
    """422 unless the Appointment's patient data is the minimal set (or absent)."""
    issues = problems(appointment, today)
    if issues:
        raise errors.unprocessable_issues(issues)


def problems(appointment: dict[str, Any], today: date) -> list[Issue]:
    """Every issue of the Appointment's contained resources and their references."""
    issues: list[Issue] = []
    contained = appointment.get("contained")
    found = False
    if contained is not None:
        if not isinstance(contained, list):
            return [_issue("Appointment.contained", "must be a list")]
        for i, resource in enumerate(contained):
            where = f"Appointment.contained[{i}]"
            if not isinstance(resource, dict) or resource.get("resourceType") != "Patient":
                issues.append(
                    _issue(
                        where,
                        "is not allowed: an Appointment contains only "
                        "the patient's minimal data (one Patient)",
                        "structure",
                    )
                )
            elif found:
                issues.append(
                    _issue(where, "is a second Patient: only one is allowed", "structure")
                )
            else:
                found = True
                issues.extend(_patient(resource, where, today))
    issues.extend(_references(appointment, found))
    return issues


def _patient(resource: dict[str, Any], where: str, today: date) -> list[Issue]:
    issues: list[Issue] = []
    for key in resource:
        if key not in ALLOWED:
            issues.append(
                _issue(
                    f"{where}.{key}",
                    "is not allowed: the patient's data is "
                    "limited to name, birthDate, telecom (phone) and gender",
                    "structure",
                )
            )
    if resource.get("id") != PATIENT_ID:
        issues.append(_issue(f"{where}.id", f"must be {PATIENT_ID!r}"))
    for key in REQUIRED:
        if key not in resource:
            issues.append(_issue(f"{where}.{key}", "is required", "required"))
    if "name" in resource:
        issues.extend(_name(resource["name"], f"{where}.name"))
    if "birthDate" in resource:
        text = resource["birthDate"]
        problem = birth_date_problem(text, today) if isinstance(text, str) else "must be a date"
        if problem:
            issues.append(_issue(f"{where}.birthDate", problem))
    if "telecom" in resource:
        issues.extend(_telecom(resource["telecom"], f"{where}.telecom"))
    if "gender" in resource and resource["gender"] not in GENDERS:
        issues.append(_issue(f"{where}.gender", "must be male, female, other or unknown"))
    return issues


def _name(value: Any, where: str) -> list[Issue]:
    if not isinstance(value, list) or len(value) != 1 or not isinstance(value[0], dict):
        return [_issue(where, "must hold exactly one name")]
    name, issues = value[0], []
    for key in name:
        if key not in NAME_ALLOWED:
            issues.append(
                _issue(f"{where}[0].{key}", "is not allowed: family and given only", "structure")
            )
    problem = name_problem(name.get("family"))
    if problem:
        issues.append(_issue(f"{where}[0].family", problem, "required"))
    given = name.get("given")
    if not isinstance(given, list) or not given:
        issues.append(_issue(f"{where}[0].given", "is empty", "required"))
    else:
        for i, part in enumerate(given):
            problem = name_problem(part)
            if problem:
                issues.append(_issue(f"{where}[0].given[{i}]", problem, "required"))
    return issues


def _telecom(value: Any, where: str) -> list[Issue]:
    if not isinstance(value, list) or len(value) != 1 or not isinstance(value[0], dict):
        return [_issue(where, "must hold exactly one phone number")]
    point, issues = value[0], []
    for key in point:
        if key not in TELECOM_ALLOWED:
            issues.append(
                _issue(f"{where}[0].{key}", "is not allowed: system and value only", "structure")
            )
    if point.get("system") != "phone":
        issues.append(_issue(f"{where}[0].system", "must be phone"))
    number = point.get("value")
    problem = phone_problem(number) if isinstance(number, str) else "must be a string"
    if problem:
        issues.append(_issue(f"{where}[0].value", problem))
    return issues


def _references(appointment: dict[str, Any], has_patient: bool) -> list[Issue]:
    """The contained Patient is referenced by exactly one participant (dom-3), as a Patient;
    no participant points at any other local id."""
    issues: list[Issue] = []
    referring = 0
    for i, participant in enumerate(appointment.get("participant") or ()):
        actor = participant.get("actor") if isinstance(participant, dict) else None
        ref = actor.get("reference") if isinstance(actor, dict) else None
        if not isinstance(ref, str) or not ref.startswith("#"):
            continue
        where = f"Appointment.participant[{i}].actor"
        if ref != REFERENCE or not has_patient:
            issues.append(_issue(f"{where}.reference", "points at no contained Patient"))
            continue
        referring += 1
        kind = actor.get("type") if isinstance(actor, dict) else None
        if kind is not None and kind != "Patient":
            issues.append(_issue(f"{where}.type", "must be Patient"))
    if has_patient and referring != 1:
        issues.append(
            _issue(
                "Appointment.participant",
                f"exactly one participant must reference {REFERENCE} (found {referring})",
                "invariant",
            )
        )
    return issues


def _issue(expression: str, text: str, code: str = "value") -> Issue:
    return Issue(code, f"{expression} {text}", expression=(expression,))
