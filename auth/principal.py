"""Who a Pro Santé Connect token speaks for: a typed ``Principal`` read from PSC's claims.

PSC's userinfo carries the national professional id (``SubjectNameID``: ``8`` + RPPS or
``0`` + ADELI), names, the professions exercised (``SubjectRefPro.exercices[]`` with their
``activities[]``: sector, role, structure identifiers) and role codes (``SubjectRole``).
``principal_from`` reads them defensively: an unknown or missing optional claim is simply
absent, but a national id of the wrong shape is refused, because the rest of the server keys
people on it (Practitioner identifiers, regulator accounts, audit trail).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from auth.errors import AuthError, LoginFailed

# IdNat_PS as PSC sends it: "8" + RPPS (11 digits) or "0" + ADELI (9 characters; the first
# two are the département, "2A"/"2B" in Corsica).
NATIONAL_ID = re.compile(r"8[0-9]{11}|0[0-9][0-9AB][0-9]{7}")
RPPS_SYSTEM_OID = "urn:oid:1.2.250.1.71.4.2.1"
# Bounds on lists read from claims: a real professional has a handful of each.
MAX_ITEMS = 64


@dataclass(frozen=True)
class Activity:
    """One place and way a profession is exercised (``exercices[].activities[]``)."""

    mode: str | None = None  # codeModeExercice (L libéral, S salarié...)
    sector: str | None = None  # codeSecteurDActivite (SA07 cabinet...)
    role: str | None = None  # codeRole
    structure_id: str | None = None  # identifiantTechniqueDeLaStructure
    siret: str | None = None
    siren: str | None = None
    finess: str | None = None
    finess_legal: str | None = None  # numeroFinessetablissementJuridique
    name: str | None = None  # raisonSocialeSite

    @property
    def structure_ids(self) -> tuple[str, ...]:
        ids = (self.structure_id, self.siret, self.siren, self.finess, self.finess_legal)
        return tuple(i for i in ids if i)


@dataclass(frozen=True)
class Profession:
    """A profession the person exercises (``SubjectRefPro.exercices[]``)."""

    code: str | None = None  # codeProfession (TRE_G15: 10 médecin, 60 infirmier...)
    category: str | None = None  # codeCategorieProfessionnelle (C civil, M militaire, E étudiant)
    specialties: tuple[str, ...] = ()  # codeSavoirFaire (TRE_R38 specialties: SM26...)
    specialty_types: tuple[str, ...] = ()  # codeTypeSavoirFaire, parallel to specialties
    civility: str | None = None  # codeCiviliteDExercice (DR, PR...)
    family_name: str | None = None  # nomDExercice
    given_name: str | None = None  # prenomDExercice
    activities: tuple[Activity, ...] = ()

    @property
    def structure_ids(self) -> tuple[str, ...]:
        return tuple(i for a in self.activities for i in a.structure_ids)


@dataclass(frozen=True)
class OtherId:
    """An entry of ``otherIds``: another identifier of the same person."""

    value: str
    origin: str | None = None  # origine
    quality: str | None = None  # qualite


@dataclass(frozen=True)
class Principal:
    """A person (or, without ``national_id``, a system) authenticated by PSC."""

    subject: str  # PSC's technical ``sub``, not the RPPS
    issuer: str
    national_id: str | None = None  # IdNat_PS: 8+RPPS or 0+ADELI
    given_name: str | None = None
    family_name: str | None = None
    preferred_username: str | None = None
    professions: tuple[Profession, ...] = ()
    roles: tuple[str, ...] = ()  # SubjectRole, e.g. "10^1.2.250.1.213.1.1.5.5"
    client_id: str | None = None  # azp: the application the person signed in to
    scopes: frozenset[str] = frozenset()
    acr: str | None = None
    other_ids: tuple[OtherId, ...] = ()
    organization: str | None = None  # SubjectOrganization
    sectors: tuple[str, ...] = ()  # Secteur_Activite

    @property
    def rpps(self) -> str | None:
        nid = self.national_id
        return nid[1:] if nid and nid.startswith("8") else None

    @property
    def adeli(self) -> str | None:
        nid = self.national_id
        return nid[1:] if nid and nid.startswith("0") else None


def principal_from(
    claims: Mapping[str, Any],
    userinfo: Mapping[str, Any] | None = None,
    *,
    error: type[AuthError] = LoginFailed,
) -> Principal:
    """The principal of verified token ``claims`` and PSC ``userinfo`` (userinfo wins for the
    person's attributes). Raises ``error`` (``LoginFailed`` by default; ``TokenRejected`` on
    the API) when ``sub``/``iss`` are missing or ``SubjectNameID`` has the wrong shape."""
    info: Mapping[str, Any] = userinfo or {}

    def pick(name: str) -> Any:
        return info[name] if info.get(name) is not None else claims.get(name)

    subject, issuer = _text(claims.get("sub")), _text(claims.get("iss"))
    if not subject or not issuer:
        raise error("the token names no subject or no issuer")
    raw_id = pick("SubjectNameID")
    national_id: str | None = None
    if raw_id is not None:
        if not isinstance(raw_id, str) or not NATIONAL_ID.fullmatch(raw_id):
            raise error(
                "the national professional id (SubjectNameID) is not 8+RPPS (11 digits) "
                "or 0+ADELI (9 characters)"
            )
        national_id = raw_id
    return Principal(
        subject=subject,
        issuer=issuer,
        national_id=national_id,
        given_name=_text(pick("given_name")),
        family_name=_text(pick("family_name")),
        preferred_username=_text(pick("preferred_username")),
        professions=tuple(_profession(e) for e in _objects(_ref_pro(pick("SubjectRefPro")))),
        roles=_texts(pick("SubjectRole")),
        client_id=_text(claims.get("azp")) or _text(claims.get("client_id")),
        scopes=scopes_of(claims),
        acr=_text(claims.get("acr")),
        other_ids=tuple(
            OtherId(value=v, origin=_text(o.get("origine")), quality=_text(o.get("qualite")))
            for o in _objects(pick("otherIds"))
            if (v := _text(o.get("identifiant")))
        ),
        organization=_text(pick("SubjectOrganization")),
        sectors=_texts(pick("Secteur_Activite")),
    )


def scopes_of(claims: Mapping[str, Any]) -> frozenset[str]:
    """OAuth scopes of a token: ``scope`` (space separated, RFC 9068) or ``scp`` (a list)."""
    scope = claims.get("scope")
    if isinstance(scope, str):
        return frozenset(scope.split()[:MAX_ITEMS])
    return frozenset(_texts(claims.get("scp")))


def _ref_pro(value: Any) -> Any:
    return value.get("exercices") if isinstance(value, Mapping) else None


def _profession(e: Mapping[str, Any]) -> Profession:
    specialties = _text(e.get("codeSavoirFaire"))
    types = _text(e.get("codeTypeSavoirFaire"))
    return Profession(
        code=_text(e.get("codeProfession")),
        category=_text(e.get("codeCategorieProfessionnelle")),
        specialties=(specialties,) if specialties else (),
        specialty_types=(types or "",) if specialties else (),
        civility=_text(e.get("codeCiviliteDExercice")),
        family_name=_text(e.get("nomDExercice")),
        given_name=_text(e.get("prenomDExercice")),
        activities=tuple(_activity(a) for a in _objects(e.get("activities"))),
    )


def _activity(a: Mapping[str, Any]) -> Activity:
    return Activity(
        mode=_text(a.get("codeModeExercice")),
        sector=_text(a.get("codeSecteurDActivite")),
        role=_text(a.get("codeRole")),
        structure_id=_text(a.get("identifiantTechniqueDeLaStructure")),
        siret=_text(a.get("numeroSiretSite")),
        siren=_text(a.get("numeroSirenSite")),
        finess=_text(a.get("numeroFinessSite")),
        finess_legal=_text(a.get("numeroFinessetablissementJuridique")),
        name=_text(a.get("raisonSocialeSite")),
    )


def _text(value: Any) -> str | None:
    """A non-empty string claim; anything else (numbers, lists, "") counts as absent."""
    return value if isinstance(value, str) and value else None


def _texts(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,) if value else ()
    if isinstance(value, Sequence):
        return tuple(v for v in value[:MAX_ITEMS] if isinstance(v, str) and v)
    return ()


def _objects(value: Any) -> list[Mapping[str, Any]]:
    if isinstance(value, Mapping):
        value = [value]
    if not isinstance(value, Sequence) or isinstance(value, str):
        return []
    return [v for v in value[:MAX_ITEMS] if isinstance(v, Mapping)]
