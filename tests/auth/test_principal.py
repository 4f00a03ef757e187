"""Reading PSC userinfo into a Principal: national id shapes, professions, roles, and
claims that are missing or of the wrong type."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from auth.errors import LoginFailed, TokenRejected
from auth.principal import Activity, OtherId, Principal, principal_from
from tests.auth.psc_stub import NATIONAL_ID, USERINFO

CLAIMS = {
    "iss": "https://auth.bas.psc.esante.gouv.fr/auth/realms/esante-wallet",
    "sub": "f3a1c2d4-0000-4000-8000-000000000001",
    "azp": "sas-regulation",
    "acr": "eidas1",
    "scope": "openid scope_all",
}


def test_a_full_psc_userinfo() -> None:
    p = principal_from(CLAIMS, USERINFO)
    assert p == Principal(
        subject=CLAIMS["sub"],
        issuer=CLAIMS["iss"],
        national_id=NATIONAL_ID,
        given_name="Jeanne",
        family_name="MARTIN",
        preferred_username=NATIONAL_ID,
        professions=p.professions,
        roles=("10^1.2.250.1.213.1.1.5.5",),
        client_id="sas-regulation",
        scopes=frozenset({"openid", "scope_all"}),
        acr="eidas1",
        other_ids=(OtherId("10002345678", "RPPS", None),),
        organization="CABINET MARTIN",
        sectors=("SA07^1.2.250.1.71.4.2.9",),
    )
    assert p.rpps == "10002345678" and p.adeli is None
    (prof,) = p.professions
    assert (prof.code, prof.category, prof.civility) == ("10", "C", "DR")
    assert prof.specialties == ("SM54",) and prof.specialty_types == ("S",)
    assert (prof.family_name, prof.given_name) == ("MARTIN", "Jeanne")
    assert prof.activities == (
        Activity(
            mode="L",
            sector="SA07",
            structure_id="R10000000123456",
            siret="12345678901234",
            name="CABINET MARTIN",
        ),
    )
    assert prof.structure_ids == ("R10000000123456", "12345678901234")


@pytest.mark.parametrize("nid", ["810002345678", "0751234567", "02A1234567", "02B0000001"])
def test_well_formed_national_ids(nid: str) -> None:
    p = principal_from(CLAIMS, {"SubjectNameID": nid})
    assert p.national_id == nid
    assert (p.rpps or p.adeli) == nid[1:]


@pytest.mark.parametrize(
    "nid",
    [
        "",
        "8",
        "81000234567",
        "8100023456789",
        "10002345678",
        "910002345678",
        "8100023456a8",
        "075123456",
        "07512345678",
        " 810002345678",
        "810002345678\n",
        "８10002345678",
        810002345678,
        ["810002345678"],
        {"id": 1},
        True,
    ],
)
def test_malformed_national_ids(nid: Any) -> None:
    with pytest.raises(LoginFailed, match="SubjectNameID") as info:
        principal_from(CLAIMS, {"SubjectNameID": nid})
    assert info.value.error == "invalid_request"
    with pytest.raises(TokenRejected, match="SubjectNameID"):
        principal_from({**CLAIMS, "SubjectNameID": nid}, None, error=TokenRejected)


def test_missing_optional_claims_are_absent() -> None:
    p = principal_from(CLAIMS, {})
    assert p.national_id is None and p.professions == () and p.roles == ()
    assert p.given_name is None and p.other_ids == () and p.rpps is None
    assert principal_from(CLAIMS).subject == CLAIMS["sub"]


def test_claims_of_the_wrong_type_are_ignored() -> None:
    info = {
        "given_name": 42,
        "family_name": ["MARTIN"],
        "SubjectRole": "10^1.2.250.1.213.1.1.5.5",
        "otherIds": [{"identifiant": 5}, "x", None, {"identifiant": "X1"}],
        "SubjectRefPro": {"exercices": [None, {"codeProfession": 10, "activities": "none"}]},
        "Secteur_Activite": [1, "SA07"],
    }
    p = principal_from(CLAIMS, info)
    assert p.given_name is None and p.family_name is None
    assert p.roles == ("10^1.2.250.1.213.1.1.5.5",)
    assert p.other_ids == (OtherId("X1"),)
    assert len(p.professions) == 1 and p.professions[0].code is None
    assert p.professions[0].activities == () and p.sectors == ("SA07",)
    assert principal_from(CLAIMS, {"SubjectRefPro": "garbage"}).professions == ()


def test_userinfo_wins_over_the_token() -> None:
    p = principal_from({**CLAIMS, "given_name": "From token"}, {"given_name": "Jeanne"})
    assert p.given_name == "Jeanne"
    assert principal_from({**CLAIMS, "given_name": "T"}, {"given_name": None}).given_name == "T"


def test_lists_are_bounded() -> None:
    info = copy.deepcopy(USERINFO)
    info["SubjectRefPro"]["exercices"] *= 500  # type: ignore[index]
    assert len(principal_from(CLAIMS, info).professions) == 64


@pytest.mark.parametrize("missing", ["sub", "iss"])
def test_subject_and_issuer_are_required(missing: str) -> None:
    claims = {k: v for k, v in CLAIMS.items() if k != missing}
    with pytest.raises(LoginFailed, match="subject or no issuer"):
        principal_from(claims, USERINFO)


def test_scopes_from_scp_list() -> None:
    p = principal_from({**{k: v for k, v in CLAIMS.items() if k != "scope"}, "scp": ["a", 1]})
    assert p.scopes == {"a"}
