"""The minimal patient data rule alone (no database): what an Appointment may contain."""

from __future__ import annotations

import copy
from datetime import date
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhir_server.booking import patient
from fhir_server.core import errors

TODAY = date(2026, 12, 7)
DATA = patient.PatientData("Dupont", "Marie", date(1980, 5, 4), "+33612345678", "female")
# elements a Patient may have in R4 that the minimal set leaves out
FORBIDDEN = (
    "meta",
    "text",
    "extension",
    "modifierExtension",
    "identifier",
    "active",
    "address",
    "maritalStatus",
    "photo",
    "contact",
    "communication",
    "generalPractitioner",
    "managingOrganization",
    "link",
    "deceasedBoolean",
    "multipleBirthBoolean",
    "implicitRules",
    "language",
)
VALUES: dict[str, Any] = {
    "name": [{"family": "Dupont", "given": ["Marie"]}],
    "birthDate": "1980-05-04",
    "telecom": [{"system": "phone", "value": "+33612345678"}],
    "gender": "female",
}


def appointment(resource: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Appointment",
        "status": "booked",
        "slot": [{"reference": "Slot/s1"}],
        "participant": [
            {"actor": {"reference": "Practitioner/p1"}, "status": "accepted"},
            patient.PatientData.participant(),
        ],
        "contained": [resource if resource is not None else DATA.resource()],
    }
    body.update(extra)
    return body


def expressions(body: dict[str, Any]) -> set[str]:
    return {e for issue in patient.problems(body, TODAY) for e in issue.expression}


def test_the_minimal_patient_passes_and_no_patient_too() -> None:
    patient.check(appointment(), TODAY)
    without = {"resourceType": "Appointment", "status": "booked", "participant": []}
    patient.check(without, TODAY)
    no_gender = DATA.resource()
    del no_gender["gender"]
    patient.check(appointment(no_gender), TODAY)


def test_the_page_data_makes_the_resource_and_its_participant() -> None:
    assert DATA.resource() == {
        "resourceType": "Patient",
        "id": "patient",
        "name": [{"family": "Dupont", "given": ["Marie"]}],
        "birthDate": "1980-05-04",
        "telecom": [{"system": "phone", "value": "+33612345678"}],
        "gender": "female",
    }
    assert patient.PatientData.participant() == {
        "actor": {"reference": "#patient", "type": "Patient"},
        "required": "required",
        "status": "accepted",
    }


@given(
    st.sets(st.sampled_from(sorted(VALUES))),
    st.sets(st.sampled_from(FORBIDDEN), max_size=4),
)
def test_allowed_and_forbidden_elements(kept: set[str], extra: set[str]) -> None:
    """A Patient is accepted exactly when it has the required elements and no other than
    the minimal set; each forbidden element and each missing one is named."""
    resource: dict[str, Any] = {"resourceType": "Patient", "id": "patient"}
    resource.update({k: copy.deepcopy(VALUES[k]) for k in kept})
    resource.update({k: "x" for k in extra})
    found = expressions(appointment(resource))
    missing = {k for k in patient.REQUIRED if k not in kept}
    want = {f"Appointment.contained[0].{k}" for k in extra | missing}
    assert found == want
    if want:
        with pytest.raises(errors.Unprocessable) as exc:
            patient.check(appointment(resource), TODAY)
        assert exc.value.status == 422
        assert {e for i in exc.value.issues for e in i.expression} == want


def test_other_contained_resources_and_a_second_patient_are_refused() -> None:
    body = appointment()
    body["contained"] += [
        {"resourceType": "Practitioner", "id": "pr"},
        DATA.resource(),
        "junk",
    ]
    assert expressions(body) == {
        "Appointment.contained[1]",
        "Appointment.contained[2]",
        "Appointment.contained[3]",
    }
    only_other = appointment({"resourceType": "RelatedPerson", "id": "patient"})
    assert "Appointment.contained[0]" in expressions(only_other)
    assert expressions(appointment(contained={"resourceType": "Patient"})) == {
        "Appointment.contained"
    }


@pytest.mark.parametrize(
    ("name", "where"),
    [
        ([{"family": "", "given": ["Marie"]}], "name[0].family"),
        ([{"family": "  ", "given": ["Marie"]}], "name[0].family"),
        ([{"given": ["Marie"]}], "name[0].family"),
        ([{"family": "Dupont", "given": []}], "name[0].given"),
        ([{"family": "Dupont"}], "name[0].given"),
        ([{"family": "Dupont", "given": [" "]}], "name[0].given[0]"),
        ([{"family": "Dupont", "given": ["Marie", ""]}], "name[0].given[1]"),
        ([{"family": "D" * 101, "given": ["Marie"]}], "name[0].family"),
        ([{"family": "Du\npont", "given": ["Marie"]}], "name[0].family"),
        ([{"family": "Dupont", "given": ["Marie"], "prefix": ["Mme"]}], "name[0].prefix"),
        ([{"family": "Dupont", "given": ["Marie"], "use": "official"}], "name[0].use"),
        ([VALUES["name"][0], VALUES["name"][0]], "name"),
        ([], "name"),
        ("Dupont", "name"),
    ],
)
def test_bad_names(name: Any, where: str) -> None:
    resource = {**DATA.resource(), "name": name}
    assert expressions(appointment(resource)) == {f"Appointment.contained[0].{where}"}


@pytest.mark.parametrize(
    "birth",
    [
        "2026-12-08",
        "3000-01-01",
        "1980",
        "1980-05",
        "1980-02-30",
        "04/05/1980",
        "",
        1980,
        "1880-01-01",
        "1980-05-04T10:00:00",
    ],
)
def test_bad_birth_dates(birth: Any) -> None:
    resource = {**DATA.resource(), "birthDate": birth}
    assert expressions(appointment(resource)) == {"Appointment.contained[0].birthDate"}


def test_born_today_is_accepted() -> None:
    patient.check(appointment({**DATA.resource(), "birthDate": TODAY.isoformat()}), TODAY)


@pytest.mark.parametrize(
    ("telecom", "where"),
    [
        ([{"system": "phone", "value": "06 12 34 56 78"}], "telecom[0].value"),
        ([{"system": "phone", "value": "0612345678"}], "telecom[0].value"),
        ([{"system": "phone", "value": "+3361234567"}], "telecom[0].value"),
        ([{"system": "phone", "value": "+330612345678"}], "telecom[0].value"),
        ([{"system": "phone", "value": "12345"}], "telecom[0].value"),
        ([{"system": "phone", "value": ""}], "telecom[0].value"),
        ([{"system": "phone", "value": 612345678}], "telecom[0].value"),
        ([{"system": "email", "value": "+33612345678"}], "telecom[0].system"),
        ([{"value": "+33612345678"}], "telecom[0].system"),
        ([{"system": "phone", "value": "+33612345678", "use": "mobile"}], "telecom[0].use"),
        ([VALUES["telecom"][0], VALUES["telecom"][0]], "telecom"),
        ([], "telecom"),
    ],
)
def test_bad_phones(telecom: Any, where: str) -> None:
    resource = {**DATA.resource(), "telecom": telecom}
    assert expressions(appointment(resource)) == {f"Appointment.contained[0].{where}"}


def test_a_foreign_e164_number_is_accepted() -> None:
    resource = {**DATA.resource(), "telecom": [{"system": "phone", "value": "+442071234567"}]}
    patient.check(appointment(resource), TODAY)


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("06 12 34 56 78", "+33612345678"),
        ("06.12.34.56.78", "+33612345678"),
        ("06-12-34-56-78", "+33612345678"),
        ("0612345678", "+33612345678"),
        (" +33 6 12 34 56 78 ", "+33612345678"),
        ("+44 20 7123 4567", "+442071234567"),
        ("06 12 34 56 7", None),
        ("+33 06 12 34 56 78", None),
        ("00 12 34 56 78", None),
        ("tel: 0612345678", None),
        ("", None),
        ("+0612345678", None),
    ],
)
def test_phone_normalisation(typed: str, stored: str | None) -> None:
    assert patient.normalise_phone(typed) == stored


def test_bad_gender_and_id() -> None:
    resource = {**DATA.resource(), "gender": "F", "id": "p2"}
    body = appointment(resource)
    body["participant"][1]["actor"]["reference"] = "#p2"
    found = expressions(body)
    assert "Appointment.contained[0].gender" in found
    assert "Appointment.contained[0].id" in found


def test_the_patient_is_referenced_once_as_a_patient() -> None:
    body = appointment()
    body["participant"].pop()  # dom-3: a contained resource is referenced
    assert expressions(body) == {"Appointment.participant"}
    body = appointment()
    body["participant"].append(patient.PatientData.participant())
    assert expressions(body) == {"Appointment.participant"}
    body = appointment()
    body["participant"][1]["actor"]["type"] = "RelatedPerson"
    assert expressions(body) == {"Appointment.participant[1].actor.type"}


def test_a_local_reference_to_nothing_is_refused() -> None:
    body = appointment()
    body["participant"].append({"actor": {"reference": "#other"}, "status": "accepted"})
    assert expressions(body) == {"Appointment.participant[2].actor.reference"}
    body = {
        "resourceType": "Appointment",
        "participant": [{"actor": {"reference": "#patient"}, "status": "accepted"}],
    }
    assert expressions(body) == {"Appointment.participant[0].actor.reference"}


def test_diagnostics_never_repeat_the_values() -> None:
    resource = {
        **DATA.resource(),
        "name": [{"family": "Secretname" * 20, "given": ["Hiddengiven\n"]}],
        "birthDate": "2999-01-01",
        "telecom": [{"system": "phone", "value": "0699999999"}],
    }
    text = " ".join(i.diagnostics for i in patient.problems(appointment(resource), TODAY))
    for value in ("Secretname", "Hiddengiven", "2999", "0699999999"):
        assert value not in text


def test_the_slots_owner_gets_the_minimal_patient_and_it_validates() -> None:
    """A booking forwarded to the owner of a pulled slot (the practitioner's agenda) keeps
    the contained Patient and its participant, so the owner knows whom to expect; another
    participant's local reference still leaves (our ids mean nothing there)."""
    from fhir_server.booking.forward import for_owner
    from fhir_server.validation.packages import load_conformance
    from fhir_server.validation.validator import Validator
    from tests.conftest import REFERENCE
    from tests.delivery.appointments import sas_appointment

    body = sas_appointment(contained=[DATA.resource()], slot=[{"reference": "Slot/ours"}])
    body["participant"][0]["actor"]["reference"] = "Practitioner/ours"
    body["participant"].append(patient.PatientData.participant())
    key = {"system": "urn:oid:1.2.3", "value": "k-1"}
    out = for_owner(body, "theirs", key)
    assert out["contained"] == [DATA.resource()]
    assert out["participant"][1] == patient.PatientData.participant()
    assert "reference" not in out["participant"][0]["actor"]
    no_patient = for_owner(sas_appointment(), "theirs", key)
    assert "contained" not in no_patient
    cache = REFERENCE / "fhir-packages"
    if not (cache / "ans.fhir.fr.sas#1.1.0" / "package").is_dir():
        pytest.skip(f"the SAS package is not in {cache} (../shared/reference)")
    validator = Validator(load_conformance(cache, ["ans.fhir.fr.sas#1.1.0"], []))
    issues = [i for i in validator.validate(out) if i.severity in ("error", "fatal")]
    assert issues == []


@given(
    st.integers(min_value=1, max_value=9),
    st.lists(st.integers(min_value=0, max_value=9), min_size=8, max_size=8),
    st.sampled_from(["", " ", ".", "-"]),
    st.booleans(),
)
def test_every_french_number_however_written_is_one_e164_value(
    first: int, rest: list[int], sep: str, international: bool
) -> None:
    digits = [first, *rest]
    pairs = [str(digits[0])] + ["".join(map(str, digits[i : i + 2])) for i in (1, 3, 5, 7)]
    typed = ("+33 " if international else "0") + sep.join(pairs)
    stored = patient.normalise_phone(typed)
    assert stored == "+33" + "".join(map(str, digits))
    assert patient.phone_problem(stored) is None
    assert patient.normalise_phone(stored) == stored  # normalising twice changes nothing
