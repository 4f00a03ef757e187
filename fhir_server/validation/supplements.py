"""Rules the official SAS test kit checks that the SAS 1.1.0 profiles do not say.

The test kit (``shared/reference/sas-guide/TEST-KIT.md``) fails a response whose contained
Location has a postal code that is not 5 digits, although the profiles only require the
element (and ``sas-sos-location-aggregator`` a ``maxLength`` of 5). These rules are added
to the compiled profiles as invariants with ``sas-`` keys. The postal code is an error (a
4-digit postal code must be rejected); the others are warnings: the test kit checks them on
responses, a write that breaks them is still conformant to the profiles.
"""

from __future__ import annotations

import re
from typing import Any

from fhir_server.validation.compiled import Constraint
from fhir_server.validation.invariants import supplement

SAS = "http://sas.fr/fhir/StructureDefinition/"
SAS_IG = "https://interop.esante.gouv.fr/ig/fhir/sas/StructureDefinition/"
LOCATIONS = (SAS + "FrLocationAgregateur", SAS_IG + "sas-sos-location-aggregator")
SLOTS = (
    SAS + "FrSlotAgregateur",
    SAS_IG + "sas-cpts-slot-aggregator",
    SAS_IG + "sas-sos-slot-aggregator",
)
ROLES = (SAS + "FrPractitionerRoleExerciceAgregateur",)
REGULATOR = SAS_IG + "FrPractitionerRegul"

_POSTAL = re.compile(r"[0-9]{5}")
_INSTANT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}[+-]\d{2}:\d{2}")
_PHONE = re.compile(r"\+33\d{9}|\+262\d{9}|\+590\d{9}|\+596\d{9}|\+594\d{9}")
_ORG_ID = re.compile(r"1[0-9]{9}|3[0-9]{14}|4[0-9]{14}")


def _postal(value: Any) -> bool:
    return not isinstance(value, str) or _POSTAL.fullmatch(value) is not None


def _instant(value: Any) -> bool:
    return not isinstance(value, str) or _INSTANT.fullmatch(value) is not None


def _comment(slot: Any) -> bool:
    comment = slot.get("comment") if isinstance(slot, dict) else None
    return isinstance(comment, str) and comment.strip() != ""


def _appointment_type(value: Any) -> bool:
    codings = value.get("coding") if isinstance(value, dict) else None
    if not isinstance(codings, list):
        return True
    return all(not isinstance(c, dict) or c.get("code") in ("ROUTINE", "WALKIN") for c in codings)


def _phone(telecom: Any) -> bool:
    if not isinstance(telecom, dict) or telecom.get("system") != "phone":
        return True
    value = telecom.get("value")
    return not isinstance(value, str) or _PHONE.fullmatch(value) is not None


def _organization_id(identifier: Any) -> bool:
    value = identifier.get("value") if isinstance(identifier, dict) else None
    return not isinstance(value, str) or _ORG_ID.fullmatch(value) is not None


def _has_name(practitioner: Any) -> bool:
    names = practitioner.get("name") if isinstance(practitioner, dict) else None
    return isinstance(names, list) and any(isinstance(n, dict) and n for n in names)


def _has_email(practitioner: Any) -> bool:
    telecoms = practitioner.get("telecom") if isinstance(practitioner, dict) else None
    return isinstance(telecoms, list) and any(
        isinstance(t, dict) and t.get("system") == "email" and t.get("value") for t in telecoms
    )


def sas_supplements() -> dict[str, list[tuple[str, Constraint]]]:
    """profile URL -> [(element path, invariant)], for ``Validator(supplements=...)``."""
    postal = supplement(
        "sas-postalcode",
        "matches('^[0-9]{5}$')",
        "A French postal code has 5 digits (SAS test kit)",
        "Un code postal français compte 5 chiffres (kit de test SAS)",
        check=_postal,
    )
    instant = supplement(
        "sas-instant",
        r"matches('^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}\\.\\d{3}[+-]\\d{2}:\\d{2}$')",
        "The SAS test kit expects YYYY-MM-DDThh:mm:ss.sss+hh:mm (milliseconds, numeric offset)",
        "Le kit de test SAS attend AAAA-MM-JJThh:mm:ss.sss+hh:mm (millisecondes, décalage "
        "numérique)",
        "warning",
        check=_instant,
    )
    comment = supplement(
        "sas-comment",
        "comment.exists() and comment.trim() != ''",
        "Slot.comment carries the booking URL: the SAS test kit requires it",
        "Slot.comment porte l'URL de prise de rendez-vous : le kit de test SAS l'exige",
        "warning",
        check=_comment,
    )
    appointment_type = supplement(
        "sas-appointmenttype",
        "coding.all(code = 'ROUTINE' or code = 'WALKIN')",
        "The SAS test kit accepts appointmentType ROUTINE or WALKIN only",
        "Le kit de test SAS n'accepte que ROUTINE ou WALKIN pour appointmentType",
        "warning",
        check=_appointment_type,
    )
    phone = supplement(
        "sas-phone",
        "system = 'phone' implies value.matches('^\\+(33|262|590|596|594)\\d{9}$')",
        "A phone number is written +33 (or +262, +590, +596, +594) and 9 digits",
        "Un numéro de téléphone s'écrit +33 (ou +262, +590, +596, +594) suivi de 9 chiffres",
        "warning",
        check=_phone,
    )
    organization = supplement(
        "sas-organization-id",
        "value.matches('^(1[0-9]{9}|3[0-9]{14}|4[0-9]{14})$')",
        "The organization identifier is a FINESS (1+9 digits), SIRET (3+14) or RPPS rang (4+14)",
        "L'identifiant de structure est un FINESS (1+9 chiffres), un SIRET (3+14) ou un rang "
        "RPPS (4+14)",
        "warning",
        check=_organization_id,
    )
    # FrPractitionerRegul makes family/given and telecom.system/value required inside a name
    # or a telecom, but not the name or the telecom themselves. The guide's account is a name,
    # a first name and an e-mail (specifications fonctionnelles, INT_R02), and the test kit
    # rejects an account without a name or without a telecom (TEST-KIT.md, section 5).
    regulator_name = supplement(
        "sas-regul-name",
        "name.exists()",
        "A regulator account has a name (family and given): the SAS guide and test kit require it",
        "Un compte régulateur a un nom (nom et prénom) : le guide et le kit de test SAS l'exigent",
        check=_has_name,
    )
    regulator_email = supplement(
        "sas-regul-email",
        "telecom.where(system = 'email' and value.exists()).exists()",
        "A regulator account has an e-mail address (telecom with system email): the SAS "
        "guide and test kit require it",
        "Un compte régulateur a une adresse e-mail (telecom de system email) : le guide et le "
        "kit de test SAS l'exigent",
        check=_has_email,
    )
    out: dict[str, list[tuple[str, Constraint]]] = {
        REGULATOR: [("Practitioner", regulator_name), ("Practitioner", regulator_email)]
    }
    for url in LOCATIONS:
        out.setdefault(url, []).append(("Location.address.postalCode", postal))
    for url in SLOTS:
        rules = out.setdefault(url, [])
        rules += [("Slot.start", instant), ("Slot.end", instant)]
        if url != SAS_IG + "sas-sos-slot-aggregator":  # the kit's PS and CPTS searches
            rules.append(("Slot", comment))
        if url == SAS + "FrSlotAgregateur":
            rules.append(("Slot.appointmentType", appointment_type))
    for url in ROLES:
        out.setdefault(url, []).extend(
            [
                ("PractitionerRole.telecom", phone),
                ("PractitionerRole.organization.identifier", organization),
            ]
        )
    return out
