"""The fixture professionals: national ids of the right shapes, technical subjects."""

from __future__ import annotations

from auth.dev_idp.fixtures import PROFESSIONALS, find_professional, professional_by_subject


def luhn_ok(number: str) -> bool:
    total = 0
    for i, char in enumerate(reversed(number)):
        digit = int(char) * (2 if i % 2 else 1)
        total += digit - 9 if digit > 9 else digit
    return total % 10 == 0


def test_national_ids_have_the_psc_shapes() -> None:
    for pro in PROFESSIONALS:
        assert luhn_ok(pro.number), pro.login
        if pro.id_type == "RPPS":
            assert len(pro.number) == 11 and pro.national_id == "8" + pro.number
        else:
            assert len(pro.number) == 9 and pro.national_id == "0" + pro.number


def test_the_fixtures_cover_regulators_a_gp_and_an_adeli_nurse() -> None:
    kinds = [(p.id_type, p.profession) for p in PROFESSIONALS]
    assert kinds.count(("RPPS", "10")) >= 3
    assert ("ADELI", "60") in kinds
    assert sum("régulat" in p.title for p in PROFESSIONALS) >= 2


def test_subjects_are_technical_stable_and_distinct() -> None:
    subjects = [p.subject for p in PROFESSIONALS]
    assert len(set(subjects)) == len(subjects)
    for pro in PROFESSIONALS:
        assert pro.number not in pro.subject
        assert professional_by_subject(pro.subject) is pro
        assert find_professional(pro.login) is pro
    assert find_professional("nobody") is None


def test_userinfo_shape() -> None:
    info = PROFESSIONALS[0].userinfo()
    assert {
        "sub",
        "SubjectNameID",
        "preferred_username",
        "given_name",
        "family_name",
        "SubjectOrganization",
        "SubjectRole",
        "otherIds",
        "SubjectRefPro",
    } <= set(info)
    exercice = info["SubjectRefPro"]["exercices"][0]
    # PSC's spelling: a capital after the "D" of "d'exercice" / "d'activité"
    assert (exercice["nomDExercice"], exercice["prenomDExercice"]) == ("FICTIF", "CAMILLE")
    assert exercice["codeCiviliteDExercice"] == "DR"
    activity = exercice["activities"][0]
    assert activity["codeSecteurDActivite"] == "SA07"
    assert activity["identifiantTechniqueDeLaStructure"]
