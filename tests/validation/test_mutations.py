"""For each SAS profile, examples broken one rule at a time are rejected, and the error
points at the broken element (``expression``) with the right issue code."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from fhir_server.validation.validator import Validator
from tests.validation.conftest import errors, example

SAS = "http://sas.fr/fhir/StructureDefinition/"
IG = "https://interop.esante.gouv.fr/ig/fhir/sas/StructureDefinition/"
Json = dict[str, Any]
Mutation = Callable[[Json], Any]


def _set(path: str, value: Any) -> Mutation:
    """``a.b[0].c`` = value."""

    def apply(resource: Json) -> None:
        parent, key = _walk(resource, path)
        parent[key] = value

    return apply


def _delete(path: str) -> Mutation:
    def apply(resource: Json) -> None:
        parent, key = _walk(resource, path)
        del parent[key]

    return apply


def _walk(resource: Json, path: str) -> tuple[Any, Any]:
    parts: list[Any] = []
    for part in path.split("."):
        name, _, index = part.partition("[")
        parts.append(name)
        if index:
            parts.append(int(index.rstrip("]")))
    current: Any = resource
    for part in parts[:-1]:
        current = current[part]
    return current, parts[-1]


def _location() -> Json:
    """The contained Location of a PractitionerRole example, as a resource of its own."""
    role = example("PractitionerRole-ExamplePractitionerRoleAgregateur")
    location: Json = copy.deepcopy(role["contained"][0])
    return location


# (case id, example, mutations, expected expression, expected issue code)
CASES: list[tuple[str, str, list[Mutation], str, str]] = [
    # FrSlotAgregateur
    ("slot-no-end", "Slot-ExampleSlotPSIndiv1", [_delete("end")], "Slot.end", "required"),
    ("slot-no-status", "Slot-ExampleSlotPSIndiv1", [_delete("status")], "Slot.status", "required"),
    ("slot-busy", "Slot-ExampleSlotPSIndiv1", [_set("status", "busy")], "Slot.status", "value"),
    (
        "slot-status-unknown",
        "Slot-ExampleSlotPSIndiv1",
        [_set("status", "maybe")],
        "Slot.status",
        "code-invalid",
    ),
    (
        "slot-security-system",
        "Slot-ExampleSlotPSIndiv1",
        [_set("meta.security[0].system", "http://example.org/other")],
        "Slot.meta.security[0].system",
        "code-invalid",
    ),
    (
        "slot-security-code",
        "Slot-ExampleSlotPSIndiv1",
        [_set("meta.security[0].code", "VIP")],
        "Slot.meta.security[0].code",
        "code-invalid",
    ),
    (
        "slot-no-schedule",
        "Slot-ExampleSlotPSIndiv1",
        [_delete("schedule")],
        "Slot.schedule",
        "required",
    ),
    (
        "slot-schedule-type",
        "Slot-ExampleSlotPSIndiv1",
        [_set("schedule.reference", "Practitioner/p1")],
        "Slot.schedule",
        "structure",
    ),
    (
        "slot-consultation-code",
        "Slot-ExampleSlotPSIndiv1",
        [_set("serviceType[0].coding[0].code", "XYZ")],
        "Slot.serviceType[0].coding[0].code",
        "code-invalid",
    ),
    (
        "slot-start-date",
        "Slot-ExampleSlotPSIndiv1",
        [_set("start", "2021-11-05")],
        "Slot.start",
        "value",
    ),
    (
        "slot-start-array",
        "Slot-ExampleSlotPSIndiv1",
        [_set("start", ["x"])],
        "Slot.start",
        "structure",
    ),
    (
        "slot-unknown-element",
        "Slot-ExampleSlotPSIndiv1",
        [_set("colour", "blue")],
        "Slot.colour",
        "structure",
    ),
    (
        "slot-overbooked-string",
        "Slot-ExampleSlotPSIndiv1",
        [_set("overbooked", "no")],
        "Slot.overbooked",
        "value",
    ),
    (
        "slot-empty-comment",
        "Slot-ExampleSlotPSIndiv1",
        [_set("comment", "")],
        "Slot.comment",
        "value",
    ),
    ("slot-null", "Slot-ExampleSlotPSIndiv1", [_set("comment", None)], "Slot.comment", "value"),
    (
        "slot-contained-unreferenced",
        "Slot-ExampleSlotPSIndiv1",
        [_set("contained", [{"resourceType": "Location", "id": "l1", "name": "x"}])],
        "Slot",
        "invariant",
    ),
    # sas-cpts-slot-aggregator
    (
        "cpts-no-healthcareservice-extension",
        "Slot-ExampleSlotCPTS1",
        [_delete("serviceType[1].extension")],
        "Slot.serviceType[1].extension",
        "required",
    ),
    (
        "cpts-extension-target",
        "Slot-ExampleSlotCPTS1",
        [_set("serviceType[1].extension[0].valueReference.reference", "Practitioner/p1")],
        "Slot.serviceType[1].extension[0].value.ofType(Reference)",
        "structure",
    ),
    (
        "cpts-extension-url",
        "Slot-ExampleSlotCPTS1",
        [_set("serviceType[1].extension[0].url", "http://example.org/other")],
        "Slot.serviceType[1].extension",
        "required",
    ),
    (
        "cpts-security-code",
        "Slot-ExampleSlotCPTS1",
        [_set("meta.security[1].code", "VIP")],
        "Slot.meta.security[1].code",
        "code-invalid",
    ),
    (
        "cpts-appointment-type",
        "Slot-ExampleSlotCPTS1",
        [_set("appointmentType.coding[0].code", "CHECKUP")],
        "Slot.appointmentType.coding[0].code",
        "code-invalid",
    ),
    ("cpts-busy", "Slot-ExampleSlotCPTS1", [_set("status", "busy")], "Slot.status", "value"),
    # sas-sos-slot-aggregator
    (
        "sos-security-pro",
        "Slot-ExampleSlotSOS1",
        [_set("meta.security[0].code", "PRO")],
        "Slot.meta.security[0].code",
        "code-invalid",
    ),
    (
        "sos-consultation-code",
        "Slot-ExampleSlotSOS1",
        [_set("serviceType[0].coding[0].code", "EMER")],
        "Slot.serviceType[0].coding[0].code",
        "code-invalid",
    ),
    (
        "sos-schedule-target",
        "Slot-ExampleSlotSOS1",
        [_set("schedule.reference", "Location/1111111111")],
        "Slot.schedule",
        "structure",
    ),
    # FrScheduleAgregateur
    (
        "schedule-no-actor",
        "Schedule-ExampleSchedule1",
        [_delete("actor")],
        "Schedule.actor",
        "required",
    ),
    (
        "schedule-service-type",
        "Schedule-ExampleSchedule1",
        [_set("serviceType", [{"text": "x"}])],
        "Schedule.serviceType",
        "structure",
    ),
    (
        "schedule-actor-type",
        "Schedule-ExampleSchedule1",
        [_set("actor[0].reference", "Organization/o1")],
        "Schedule.actor[0]",
        "structure",
    ),
    # sas-sos-schedule-aggregator
    (
        "sos-schedule-logical-actor",
        "Schedule-ExampleScheduleSOS1",
        [_set("actor", [{"identifier": {"value": "1111111111"}}])],
        "Schedule.actor[0].reference",
        "required",
    ),
    # FrPractitionerAgregateur
    (
        "practitioner-idnps-system",
        "Practitioner-ExamplePractitioner",
        [_set("identifier[0].system", "urn:oid:1.2.250.1.71.4.2.2")],
        "Practitioner.identifier[0].system",
        "value",
    ),
    (
        "practitioner-identifier-type",
        "Practitioner-ExamplePractitioner",
        [_set("identifier[0].type.coding[0].code", "INTRN")],
        "Practitioner.identifier[0].type",
        "value",
    ),
    (
        "practitioner-no-identifier",
        "Practitioner-ExamplePractitioner",
        [_delete("identifier")],
        "Practitioner.identifier",
        "required",
    ),
    (
        "practitioner-no-identifier-value",
        "Practitioner-ExamplePractitioner",
        [_delete("identifier[0].value")],
        "Practitioner.identifier[0].value",
        "required",
    ),
    # FrPractitionerRegul (INT_R02 regulator accounts, TEST-KIT.md §5)
    (
        "regul-no-active",
        "Practitioner-ExamplePractitionerRegul2",
        [_delete("active")],
        "Practitioner.active",
        "required",
    ),
    (
        "regul-no-family",
        "Practitioner-ExamplePractitionerRegul2",
        [_delete("name[0].family")],
        "Practitioner.name[0].family",
        "required",
    ),
    (
        "regul-empty-family",
        "Practitioner-ExamplePractitionerRegul2",
        [_set("name[0].family", "")],
        "Practitioner.name[0].family",
        "value",
    ),
    (
        "regul-telecom-phone",
        "Practitioner-ExamplePractitionerRegul2",
        [_set("telecom[0].system", "phone")],
        "Practitioner.telecom[0].system",
        "value",
    ),
    (
        "regul-no-email",
        "Practitioner-ExamplePractitionerRegul2",
        [_delete("telecom[0].value")],
        "Practitioner.telecom[0].value",
        "required",
    ),
    (
        "regul-idnps-system-intrn-code",
        "Practitioner-ExamplePractitionerRegul2",
        [_set("identifier[0].type.coding[0].code", "INTRN")],
        "Practitioner.identifier[0].type",
        "value",
    ),
    (
        "regul-intrn-system-idnps-code",
        "Practitioner-ExamplePractitionerRegul2",
        [_set("identifier[0].system", "urn:oid:1.2.250.1.213.3.6")],
        "Practitioner.identifier[0].type",
        "value",
    ),
    (
        "regul-meta-source",
        "Practitioner-ExamplePractitionerRegul2",
        [_set("meta.source", "urn:oid:1.2.3")],
        "Practitioner.meta.source",
        "value",
    ),
    # FrPractitionerRoleExerciceAgregateur
    (
        "role-location-not-contained",
        "PractitionerRole-ExamplePractitionerRoleAgregateur",
        [_set("location[0].reference", "Location/ExampleLocation")],
        "PractitionerRole.location[0]",
        "structure",
    ),
    (
        "role-postal-code-4-digits",
        "PractitionerRole-ExamplePractitionerRoleAgregateur",
        [_set("contained[0].address.postalCode", "3184")],
        "PractitionerRole.contained[0].address.postalCode",
        "invariant",
    ),
    (
        "role-contained-no-city",
        "PractitionerRole-ExamplePractitionerRoleAgregateur",
        [_delete("contained[0].address.city")],
        "PractitionerRole.contained[0].address.city",
        "required",
    ),
    (
        "role-contained-no-identifier",
        "PractitionerRole-ExamplePractitionerRoleAgregateur",
        [_delete("contained[0].identifier")],
        "PractitionerRole.contained[0].identifier",
        "required",
    ),
    (
        "role-no-contained",
        "PractitionerRole-ExamplePractitionerRoleAgregateur",
        [_delete("contained")],
        "PractitionerRole.contained",
        "required",
    ),
    (
        "role-dangling-contained-reference",
        "PractitionerRole-ExamplePractitionerRoleAgregateur",
        [_set("location[0].reference", "#elsewhere")],
        "PractitionerRole.location[0]",
        "invariant",
    ),
    (
        "role-no-location",
        "PractitionerRole-ExamplePractitionerRoleAgregateur",
        [_delete("location")],
        "PractitionerRole.location",
        "required",
    ),
    (
        "role-practitioner-target",
        "PractitionerRole-ExamplePractitionerRoleAgregateur",
        [_set("practitioner.reference", "Organization/o1")],
        "PractitionerRole.practitioner",
        "structure",
    ),
    # FrLocationAgregateur (a Location of its own)
    ("location-no-address", "@location", [_delete("address")], "Location.address", "required"),
    (
        "location-postal-code",
        "@location",
        [_set("address.postalCode", "3184")],
        "Location.address.postalCode",
        "invariant",
    ),
    (
        "location-two-lines",
        "@location",
        [_set("address.line", ["1 rue A", "2 rue B"])],
        "Location.address.line",
        "structure",
    ),
    # sas-sos-location-aggregator
    ("sos-location-no-name", "Location-1111111111", [_delete("name")], "Location.name", "required"),
    (
        "sos-location-postal-code-long",
        "Location-1111111111",
        [_set("address.postalCode", "350000")],
        "Location.address.postalCode",
        "value",
    ),
    (
        "sos-location-managing-logical",
        "Location-1111111111",
        [_set("managingOrganization", {"display": "SOS"})],
        "Location.managingOrganization.reference",
        "required",
    ),
    (
        "sos-location-identifier-type",
        "Location-1111111111",
        [_set("identifier[0].type.coding[0].code", "FINEG")],
        "Location.identifier[0].type",
        "value",
    ),
    (
        "sos-location-days",
        "Location-1111111111",
        [_set("hoursOfOperation[0].daysOfWeek[0]", "tuesday")],
        "Location.hoursOfOperation[0].daysOfWeek[0]",
        "code-invalid",
    ),
    # sas-sos-organization-aggregator
    (
        "sos-organization-siret",
        "Organization-ExampleOrgaSOS1",
        [_set("identifier[0].value", "1950047225")],
        "Organization.identifier[0]",
        "invariant",
    ),
    (
        "sos-organization-system",
        "Organization-ExampleOrgaSOS1",
        [_set("identifier[0].system", "urn:oid:1.2.250.1.71.4.2.1")],
        "Organization.identifier[0].system",
        "value",
    ),
    (
        "sos-organization-two-identifiers",
        "Organization-ExampleOrgaSOS1",
        [lambda r: r["identifier"].append(copy.deepcopy(r["identifier"][0]))],
        "Organization.identifier",
        "structure",
    ),
    # sas-cpts-organization-aggregator
    (
        "cpts-organization-finess",
        "Organization-ExampleOrgaCPTS1",
        [_set("identifier[0].value", "334173748400020")],
        "Organization.identifier[0]",
        "invariant",
    ),
    # sas-cpts-healthcareservice-aggregator
    (
        "cpts-service-no-provider",
        "HealthcareService-ExampleHealthcareServiceCPTS1",
        [_delete("providedBy")],
        "HealthcareService.providedBy",
        "required",
    ),
    (
        "cpts-service-provider-type",
        "HealthcareService-ExampleHealthcareServiceCPTS1",
        [_set("providedBy.reference", "Location/l1")],
        "HealthcareService.providedBy",
        "structure",
    ),
    # FrAppointmentSAS
    (
        "appointment-no-operator",
        "Appointment-1",
        [_delete("extension")],
        "Appointment.extension",
        "required",
    ),
    (
        "appointment-two-operators",
        "Appointment-1",
        [lambda r: r["extension"].append(copy.deepcopy(r["extension"][0]))],
        "Appointment.extension",
        "structure",
    ),
    (
        "appointment-status",
        "Appointment-1",
        [_set("status", "done")],
        "Appointment.status",
        "code-invalid",
    ),
    (
        "appointment-participant-status",
        "Appointment-1",
        [_set("participant[0].status", "declined")],
        "Appointment.participant[0].status",
        "value",
    ),
    (
        "appointment-actor-system",
        "Appointment-1",
        [_set("participant[0].actor.identifier.system", "urn:oid:1.2.250.1.71.4.2.2")],
        "Appointment.participant[0].actor.identifier.system",
        "value",
    ),
    (
        "appointment-no-identifier",
        "Appointment-1",
        [_delete("identifier")],
        "Appointment.identifier",
        "required",
    ),
    ("appointment-no-end", "Appointment-1", [_delete("end")], "Appointment.end", "required"),
    (
        "appointment-operator-value-type",
        "Appointment-1",
        [_delete("extension[0].valueReference"), _set("extension[0].valueString", "x")],
        "Appointment.extension[0].valueString",
        "structure",
    ),
    (
        "appointment-operator-no-identifier",
        "Appointment-1",
        [
            _delete("extension[0].valueReference.identifier"),
            _set("extension[0].valueReference.display", "x"),
        ],
        "Appointment.extension[0].value.ofType(Reference).identifier",
        "required",
    ),
    # app-2 (FHIRPath, evaluated by fhirpathpy): start.exists() = end.exists()
    (
        "appointment-start-without-end",
        "Appointment-1",
        [_delete("end")],
        "Appointment",
        "invariant",
    ),
    # BundleAgregateur
    (
        "bundle-type",
        "Bundle-ExampleBundlePSIndiv",
        [_set("type", "collection")],
        "Bundle.type",
        "value",
    ),
    (
        "bundle-slot-busy",
        "Bundle-ExampleBundlePSIndiv",
        [_set("entry[0].resource.status", "busy")],
        "Bundle.entry[0].resource.status",
        "value",
    ),
    (
        "bundle-slot-no-end",
        "Bundle-ExampleBundlePSIndiv",
        [_delete("entry[0].resource.end")],
        "Bundle.entry[0].resource.end",
        "required",
    ),
    (
        "bundle-location-not-contained",
        "Bundle-ExampleBundlePSIndiv",
        [_set("entry[3].resource.location[0].reference", "Location/ExampleLocation")],
        "Bundle.entry[3].resource.location[0]",
        "structure",
    ),
    (
        "bundle-link-no-url",
        "Bundle-ExampleBundlePSIndiv",
        [_delete("link[0].url")],
        "Bundle.link[0].url",
        "required",
    ),
    # sas-cpts-bundle-aggregator
    (
        "cpts-bundle-no-total",
        "Bundle-ExampleBundleCPTS",
        [_delete("total")],
        "Bundle.total",
        "required",
    ),
    (
        "cpts-bundle-two-links",
        "Bundle-ExampleBundleCPTS",
        [lambda r: r["link"].append({"relation": "next", "url": "https://x/next"})],
        "Bundle.link",
        "structure",
    ),
    (
        "cpts-bundle-no-slot",
        "Bundle-ExampleBundleCPTS",
        [lambda r: r.__setitem__("entry", r["entry"][1:])],
        "Bundle.entry",
        "required",
    ),
    # sas-sos-bundle-aggregator
    (
        "sos-bundle-no-full-url",
        "Bundle-ExampleBundleAgregateurSOS",
        [_delete("entry[3].fullUrl")],
        "Bundle.entry[3].fullUrl",
        "required",
    ),
    (
        "sos-bundle-organization-siret",
        "Bundle-ExampleBundleAgregateurSOS",
        [_set("entry[3].resource.identifier[0].value", "1950047225")],
        "Bundle.entry[3].resource.identifier[0]",
        "invariant",
    ),
]


def _resource(name: str) -> Json:
    return _location() if name == "@location" else copy.deepcopy(example(name))


@pytest.mark.parametrize(
    ("name", "mutations", "expression", "code"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_mutation_is_rejected(
    validator: Validator, name: str, mutations: list[Mutation], expression: str, code: str
) -> None:
    resource = _resource(name)
    assert errors(validator.validate(resource)) == []
    for mutate in mutations:
        mutate(resource)
    found = errors(validator.validate(resource))
    assert (expression, code) in [(i.expression[0], i.code) for i in found], [
        i.to_json() for i in found
    ]


def test_every_sas_profile_has_mutations(validator: Validator) -> None:
    claimed = {
        url for case in CASES for url in _resource(case[1]).get("meta", {}).get("profile", [])
    }
    sas = {
        u
        for u in validator.conformance.urls("StructureDefinition")
        if validator.conformance.source_of("StructureDefinition", u) == "ans.fhir.fr.sas#1.1.0"
    }
    # No SAS example claims these: the SOS appointment (see test_sos_appointment) and the
    # CPTS extension (checked inside sas-cpts-slot-aggregator).
    untested = {
        IG + "sas-sos-appointment",
        "http://hl7.org/fhir/5.0/StructureDefinition/extension-Slot.serviceType",
    }
    assert sas - claimed == untested


def test_sos_appointment(validator: Validator) -> None:
    """No example claims sas-sos-appointment: Appointment-1 satisfies it too, and a second
    extension breaks its ``extension`` 1..1."""
    resource = copy.deepcopy(example("Appointment-1"))
    resource["meta"]["profile"] = [IG + "sas-sos-appointment"]
    assert errors(validator.validate(resource)) == []
    resource["extension"].append({"url": "http://example.org/x", "valueString": "y"})
    found = [(i.expression[0], i.code) for i in errors(validator.validate(resource))]
    assert ("Appointment.extension", "structure") in found
