"""Which Appointments go to the SAS platform, and the body and method they go with (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from fhir_server.delivery.sas import PROFILE, SasOutbox, made_through_sas, platform_body
from fhir_server.storage.port import Stored
from tests.conftest import REFERENCE
from tests.delivery.appointments import SYSTEM, plain_appointment, sas_appointment

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
EXAMPLES = REFERENCE / "fhir-packages" / "ans.fhir.fr.sas#1.1.0" / "package" / "example"


def stored(body: dict[str, object], version: int = 1, deleted: bool = False) -> Stored:
    content = orjson.dumps({**body, "id": "a1", "meta": {**body.get("meta", {}), "versionId": "1"}})  # type: ignore[dict-item]
    return Stored("Appointment", "a1", version, T0, deleted, content, "PUT")


def test_the_operator_extension_or_the_profile_make_a_sas_appointment() -> None:
    assert made_through_sas(sas_appointment())
    assert made_through_sas({**sas_appointment(), "meta": {}})  # the extension alone
    assert made_through_sas({**sas_appointment(), "extension": []})  # the profile alone
    assert not made_through_sas(plain_appointment())
    assert not made_through_sas({"resourceType": "Appointment", "extension": "junk"})


@pytest.mark.parametrize("name", ["Appointment-1.json", "Appointment-2.json"])
def test_the_guides_examples_are_sas_appointments(name: str) -> None:
    path = EXAMPLES / name
    if not path.is_file():
        pytest.skip(f"SAS examples not found at {EXAMPLES}")
    example = orjson.loads(path.read_bytes())
    assert made_through_sas(example)
    body, identifier = platform_body(example, "ours", "urn:oid:1.1.111.1.11.1.1.1")
    # the guide's example already carries the software's identifier: kept, not ours
    assert identifier == "urn:oid:1.1.111.1.11.1.1.1|b6e39355-8a61-4556-b340-36f7b95fec6a"
    sent = orjson.loads(body)
    assert {k: v for k, v in sent.items() if k != "id"} == {
        k: v for k, v in example.items() if k != "id"
    }


def test_the_body_has_one_identifier_no_id_and_no_patient() -> None:
    appointment = sas_appointment(
        identifier=[{"system": "urn:other", "value": "x"}],
        text={"status": "generated", "div": "<div>Mme Dupont</div>"},
    )
    appointment["participant"].append({"actor": {"reference": "Patient/p1"}, "status": "accepted"})
    appointment["participant"].append({"actor": {"type": "Patient", "display": "Mme D"}})
    appointment["id"] = "a1"
    body, identifier = platform_body(appointment, "a1", SYSTEM)
    sent = orjson.loads(body)
    assert identifier == f"{SYSTEM}|a1"
    assert sent["identifier"] == [{"system": SYSTEM, "value": "a1"}]
    assert "id" not in sent and "text" not in sent
    assert sent["meta"] == {"profile": [PROFILE]}
    assert len(sent["participant"]) == 1 and "Patient" not in body.decode()


def test_post_first_then_put_and_a_deletion_is_a_cancellation() -> None:
    outbox = SasOutbox(SYSTEM)
    first = outbox.message(stored(sas_appointment()), None)
    assert first is not None and first.headers == {
        "method": "POST",
        "identifier": f"{SYSTEM}|rdv-0001",
    }
    assert first.key == "Appointment/a1" and first.channel == "sas"
    v1 = stored(sas_appointment())
    second = outbox.message(stored(sas_appointment(status="fulfilled"), 2), v1)
    assert second is not None and second.headers is not None
    assert second.headers["method"] == "PUT"
    assert orjson.loads(second.body or b"")["status"] == "fulfilled"
    # a deletion of a booked one: cancelled; of a cancelled one: nothing new to tell
    gone = outbox.message(stored(sas_appointment(), 2, deleted=True), v1)
    assert gone is not None and orjson.loads(gone.body or b"")["status"] == "cancelled"
    cancelled = stored(sas_appointment(status="cancelled"))
    assert outbox.message(stored(sas_appointment(status="cancelled"), 2, True), cancelled) is None


def test_an_appointment_that_drops_the_markers_is_still_sent() -> None:
    outbox = SasOutbox(SYSTEM)
    v1 = stored(sas_appointment())
    bare = {**sas_appointment(status="noshow"), "extension": [], "meta": {}}
    message = outbox.message(stored(bare, 2), v1)
    assert message is not None and message.headers is not None
    assert message.headers["method"] == "PUT"


def test_other_appointments_are_not_sent() -> None:
    assert SasOutbox(SYSTEM).message(stored(plain_appointment()), None) is None


@pytest.mark.parametrize("status", ["booked", "cancelled", "fulfilled", "noshow"])
def test_what_is_sent_conforms_to_fr_appointment_sas(status: str) -> None:
    """The body the platform receives passes the FrAppointmentSAS profile (the SAS
    validator's check), even from a stored version carrying a patient and a slot."""
    from fhir_server.validation.packages import load_conformance
    from fhir_server.validation.validator import Validator

    cache = REFERENCE / "fhir-packages"
    if not (cache / "ans.fhir.fr.sas#1.1.0" / "package").is_dir():
        pytest.skip(f"the SAS package is not in {cache} (../shared/reference)")
    validator = Validator(load_conformance(cache, ["ans.fhir.fr.sas#1.1.0"], []))
    appointment = sas_appointment(status=status)
    appointment["participant"].append({"actor": {"reference": "Patient/p1"}, "status": "accepted"})
    appointment["slot"] = [{"reference": "Slot/s1"}]
    body, _ = platform_body({**appointment, "id": "a1"}, "a1", SYSTEM)
    issues = validator.validate(orjson.loads(body))
    errors = [i for i in issues if i.severity in ("error", "fatal")]
    assert errors == [], errors


def test_the_minimal_patient_booked_here_never_reaches_the_platform() -> None:
    """The contained Patient (booking/patient.py) and its participant are dropped; what is
    left still conforms to FrAppointmentSAS (no dangling ``#patient``)."""
    from datetime import date

    from fhir_server.booking.patient import PatientData
    from fhir_server.validation.packages import load_conformance
    from fhir_server.validation.validator import Validator

    data = PatientData("Dupont", "Marie", date(1980, 5, 4), "+33612345678", "female")
    appointment = sas_appointment(contained=[data.resource()])
    appointment["participant"].append(PatientData.participant())
    body, _ = platform_body({**appointment, "id": "a1"}, "a1", SYSTEM)
    sent = orjson.loads(body)
    assert "contained" not in sent
    assert sent["participant"] == sas_appointment()["participant"]
    for value in ("Dupont", "Marie", "1980-05-04", "+33612345678", "#patient", "Patient"):
        assert value not in body.decode()
    cache = REFERENCE / "fhir-packages"
    if not (cache / "ans.fhir.fr.sas#1.1.0" / "package").is_dir():
        pytest.skip(f"the SAS package is not in {cache} (../shared/reference)")
    validator = Validator(load_conformance(cache, ["ans.fhir.fr.sas#1.1.0"], []))
    stored_issues = validator.validate(appointment)  # what is stored here is valid too
    assert [i for i in stored_issues if i.severity in ("error", "fatal")] == []
    issues = validator.validate(sent)
    assert [i for i in issues if i.severity in ("error", "fatal")] == []
