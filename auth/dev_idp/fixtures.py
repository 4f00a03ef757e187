"""The fictional health professionals the dev IdP's login page offers.

Names, numbers and structures are invented; the numbers have the right shapes (an RPPS is 11
digits and an ADELI 9, both ending with a Luhn check digit) so that code parsing them is
exercised, and they sit in ranges no real professional has (RPPS ``19999…``, ADELI
department ``75`` category ``99``). The userinfo document follows the shape Pro Santé Connect
returns (see ``shared/reference/pro-sante-connect.md``): ``SubjectNameID`` is ``8`` + RPPS or
``0`` + ADELI, ``sub`` is a technical id unrelated to the national one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Literal

# TRE_G15 profession codes and the OID PSC appends to SubjectRole values
PROFESSION_DOCTOR = "10"
PROFESSION_NURSE = "60"
ROLE_OID = "1.2.250.1.213.1.1.5.5"
_SUB_NAMESPACE = uuid.UUID("6f1f6d56-3b0e-4a52-9a39-0d2d2f1f0a11")  # this module's own


@dataclass(frozen=True)
class Professional:
    """One fixture professional: who logs in on the dev IdP's page."""

    login: str  # the short name the login form posts back
    id_type: Literal["RPPS", "ADELI"]
    number: str  # the RPPS (11 digits) or ADELI (9 digits) number
    civility: str
    given_name: str
    family_name: str
    profession: str  # TRE_G15 code
    specialty: str | None  # TRE_R38 savoir-faire code, doctors only
    organization: str
    structure_id: str  # the structure's technical id in the national directory
    postal_code: str
    title: str  # what the login page says about them

    @property
    def national_id(self) -> str:
        """IdNat_PS, PSC's ``SubjectNameID``: ``8`` + RPPS or ``0`` + ADELI."""
        return ("8" if self.id_type == "RPPS" else "0") + self.number

    @property
    def subject(self) -> str:
        """The technical ``sub`` (PSC's is not the RPPS): stable for a given professional."""
        return f"f:{uuid.uuid5(_SUB_NAMESPACE, self.national_id)}:dev-idp"

    def userinfo(self) -> dict[str, Any]:
        """The userinfo claims, PSC-shaped."""
        activity: dict[str, Any] = {
            "codeModeExercice": "L" if self.id_type == "ADELI" else "S",
            "codeSecteurDActivite": "SA07",
            "codeRole": "FON-01",
            "identifiantTechniqueDeLaStructure": self.structure_id,
            "raisonSocialeSite": self.organization,
            "codePostal": self.postal_code,
            "codeCommune": "",
            "libelleVoie": "rue de l'Exemple",
            "numeroSiretSite": "",
            "numeroFinessSite": "",
        }
        exercice: dict[str, Any] = {
            "codeProfession": self.profession,
            "codeCategorieProfessionnelle": "C",
            "codeCiviliteDExercice": "DR" if self.profession == PROFESSION_DOCTOR else "",
            "nomDExercice": self.family_name.upper(),
            "prenomDExercice": self.given_name.upper(),
            "codeTypeSavoirFaire": "S" if self.specialty else "",
            "codeSavoirFaire": self.specialty or "",
            "activities": [activity],
        }
        return {
            "sub": self.subject,
            "SubjectNameID": self.national_id,
            "preferred_username": self.national_id,
            "given_name": self.given_name.upper(),
            "family_name": self.family_name.upper(),
            "SubjectOrganization": self.organization,
            "SubjectRole": [f"{self.profession}^{ROLE_OID}"],
            "Secteur_Activite": "SA07^1.2.250.1.71.4.2.4",
            "otherIds": [
                {"identifiant": self.national_id, "origine": "IdNat_PS", "qualite": 1},
                {"identifiant": self.number, "origine": self.id_type, "qualite": 1},
            ],
            "SubjectRefPro": {"codeCivilite": self.civility, "exercices": [exercice]},
        }


PROFESSIONALS: tuple[Professional, ...] = (
    Professional(
        login="regulateur-fictif",
        id_type="RPPS",
        number="19999000011",
        civility="MME",
        given_name="Camille",
        family_name="Fictif",
        profession=PROFESSION_DOCTOR,
        specialty="SM54",
        organization="SAMU-SAS FICTIF 99",
        structure_id="R9999900001",
        postal_code="99001",
        title="médecin régulatrice (SAS fictif 99)",
    ),
    Professional(
        login="regulateur-exemple",
        id_type="RPPS",
        number="19999000029",
        civility="M",
        given_name="Yanis",
        family_name="Exemple",
        profession=PROFESSION_DOCTOR,
        specialty="SM54",
        organization="SAMU-SAS FICTIF 99",
        structure_id="R9999900001",
        postal_code="99001",
        title="médecin régulateur (SAS fictif 99)",
    ),
    Professional(
        login="generaliste-modele",
        id_type="RPPS",
        number="19999000037",
        civility="MME",
        given_name="Louise",
        family_name="Modèle",
        profession=PROFESSION_DOCTOR,
        specialty="SM54",
        organization="CABINET DU DR MODELE",
        structure_id="R9999900002",
        postal_code="99002",
        title="médecin généraliste (cabinet libéral)",
    ),
    Professional(
        login="infirmier-essai",
        id_type="ADELI",
        number="759912348",
        civility="M",
        given_name="Paul",
        family_name="Essai",
        profession=PROFESSION_NURSE,
        specialty=None,
        organization="CABINET INFIRMIER ESSAI",
        structure_id="R9999900003",
        postal_code="99003",
        title="infirmier (identifiant ADELI)",
    ),
)


def find_professional(login: str) -> Professional | None:
    return next((p for p in PROFESSIONALS if p.login == login), None)


def professional_by_subject(subject: str) -> Professional | None:
    return next((p for p in PROFESSIONALS if p.subject == subject), None)
