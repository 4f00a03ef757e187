"""The SAS demo data set (examples/sas_demo.py): valid R4, SAS-shaped, right in Paris time."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fhir.resources.R4B import get_fhir_model_class

REPO = Path(__file__).resolve().parents[2]
PARIS = ZoneInfo("Europe/Paris")
SAS_PACKAGE = "ans.fhir.fr.sas#1.1.0"

FhirJson = dict[str, Any]


def _load_demo() -> ModuleType:
    # examples/ is not a package (it holds scripts); load the module from its file.
    path = REPO / "examples" / "sas_demo.py"
    spec = importlib.util.spec_from_file_location("sas_demo", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being created
    spec.loader.exec_module(module)
    return module


demo = _load_demo()

WINTER_NOW = datetime(2025, 1, 14, 9, 7, 30, tzinfo=PARIS)  # a Tuesday morning
# Just before the daylight-saving changes: Sunday 2025-03-30 02:00 -> 03:00,
# Sunday 2025-10-26 03:00 -> 02:00.
MARCH_NOW = datetime.fromisoformat("2025-03-29T10:00:00+01:00")
OCTOBER_NOW = datetime.fromisoformat("2025-10-25T10:00:00+02:00")
NOWS = [WINTER_NOW, MARCH_NOW, OCTOBER_NOW, datetime(2025, 7, 3, 16, 40, tzinfo=PARIS)]

INSTANT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000[+-]\d\d:\d\d$")
LOOKS_LIKE_DATETIME = re.compile(r"^\d{4}-\d\d-\d\dT")

SAS = "http://sas.fr/fhir/StructureDefinition/"
IG = "https://interop.esante.gouv.fr/ig/fhir/sas/StructureDefinition/"
FR_SLOT = "http://interopsante.org/fhir/StructureDefinition/FrSlot"
TYPE_CRENEAU = "https://mos.esante.gouv.fr/NOS/TRE_R314-TypeCreneau/FHIR/TRE-R314-TypeCreneau"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
TRE_R66 = "https://mos.esante.gouv.fr/NOS/TRE_R66-CategorieEtablissement/FHIR/TRE-R66-CategorieEtablissement"
EXT_SERVICE_TYPE = "http://hl7.org/fhir/5.0/StructureDefinition/extension-Slot.serviceType"
RPPS_SYSTEM = "urn:oid:1.2.250.1.71.4.2.1"
IDNST_SYSTEM = "urn:oid:1.2.250.1.71.4.2.2"


# --- helpers -----------------------------------------------------------------------------------


def _resources(bundle: FhirJson) -> list[FhirJson]:
    return [entry["resource"] for entry in bundle["entry"]]


def _by_type(bundle: FhirJson, resource_type: str) -> list[FhirJson]:
    return [r for r in _resources(bundle) if r["resourceType"] == resource_type]


def _index(bundle: FhirJson) -> dict[str, FhirJson]:
    return {f"{r['resourceType']}/{r['id']}": r for r in _resources(bundle)}


def _walk(node: Any) -> Iterator[Any]:
    """Every dict, list and scalar under ``node``."""
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _strings(node: Any) -> Iterator[str]:
    return (value for value in _walk(node) if isinstance(value, str))


def _references(node: Any) -> Iterator[str]:
    for value in _walk(node):
        if isinstance(value, dict) and isinstance(value.get("reference"), str):
            yield value["reference"]


def _luhn_ok(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def _local(value: str) -> datetime:
    return datetime.fromisoformat(value).astimezone(PARIS)


@pytest.fixture(scope="module")
def bundle() -> FhirJson:
    return demo.build_demo_bundle(WINTER_NOW)


# --- (a) R4 models -----------------------------------------------------------------------------


@pytest.mark.parametrize("now", NOWS, ids=str)
def test_every_resource_parses_with_r4b_models(now: datetime) -> None:
    bundle = demo.build_demo_bundle(now)
    assert bundle["type"] == "transaction"
    for resource in _resources(bundle):
        model = get_fhir_model_class(resource["resourceType"])
        model.model_validate(resource)  # raises on any unknown or malformed element
    get_fhir_model_class("Bundle").model_validate(bundle)


def test_entries_are_idempotent_puts(bundle: FhirJson) -> None:
    urls = [entry["request"]["url"] for entry in bundle["entry"]]
    assert len(urls) == len(set(urls)), "duplicate Type/id"
    for entry in bundle["entry"]:
        resource = entry["resource"]
        assert entry["request"] == {
            "method": "PUT",
            "url": f"{resource['resourceType']}/{resource['id']}",
        }
        assert re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", resource["id"])


# --- (b) time ----------------------------------------------------------------------------------


@pytest.mark.parametrize("now", NOWS, ids=str)
def test_instants_are_paris_local_with_the_right_offset(now: datetime) -> None:
    bundle = demo.build_demo_bundle(now)
    instants = [s for s in _strings(bundle) if LOOKS_LIKE_DATETIME.match(s)]
    assert instants
    for value in instants:
        assert INSTANT.match(value), value
        # Re-rendering the same instant in Paris time must give the very same string: the
        # offset is Paris's at that instant and the wall time exists.
        assert _local(value).isoformat(timespec="milliseconds") == value


@pytest.mark.parametrize("now", NOWS, ids=str)
def test_slots_are_15_minutes_within_the_window(now: datetime) -> None:
    days = 3
    bundle = demo.build_demo_bundle(now, days=days)
    slots = _by_type(bundle, "Slot")
    assert slots
    for slot in slots:
        start, end = datetime.fromisoformat(slot["start"]), datetime.fromisoformat(slot["end"])
        assert end - start == timedelta(minutes=15)  # aware subtraction = elapsed time
        assert now <= start and end <= now + timedelta(days=days)
        assert start.minute % 15 == 0 and start.second == 0


def test_no_slot_in_the_missing_march_hour() -> None:
    slots = _by_type(demo.build_demo_bundle(MARCH_NOW), "Slot")
    gap_day = [s for s in slots if s["start"].startswith("2025-03-30")]
    assert gap_day, "the SOS night window should cover the change"
    for slot in slots:
        for value in (slot["start"], slot["end"]):
            assert not value.startswith("2025-03-30T02:"), value
            local = _local(value)
            expected = "+01:00" if local < datetime(2025, 3, 30, 3, tzinfo=PARIS) else "+02:00"
            assert value.endswith(expected), value
    # The 00:00-06:00 Sunday night window really lasts 5 hours that night.
    night = [s for s in gap_day if s["start"] < "2025-03-30T06"]
    assert len(night) == 5 * 4
    assert any(s["start"] == "2025-03-30T01:45:00.000+01:00" for s in night)
    assert any(s["start"] == "2025-03-30T03:00:00.000+02:00" for s in night)
    # Monday after the change: summer time.
    assert all(s["start"].endswith("+02:00") for s in slots if s["start"] >= "2025-03-31")


def test_the_repeated_october_hour_has_both_offsets() -> None:
    slots = _by_type(demo.build_demo_bundle(OCTOBER_NOW), "Slot")
    starts = {s["start"] for s in slots}
    assert "2025-10-26T02:00:00.000+02:00" in starts
    assert "2025-10-26T02:00:00.000+01:00" in starts
    night = [s for s in slots if "2025-10-26T00" <= s["start"] < "2025-10-26T06"]
    assert len(night) == 7 * 4  # 00:00-06:00 lasts 7 hours that night
    assert len({s["id"] for s in slots}) == len(slots)
    for slot in slots:
        start = datetime.fromisoformat(slot["start"])
        if start < datetime.fromisoformat("2025-10-26T02:00:00+01:00"):
            assert slot["start"].endswith("+02:00"), slot["start"]
        else:
            assert slot["start"].endswith("+01:00"), slot["start"]


def test_naive_now_means_paris_and_default_now_works() -> None:
    naive = demo.build_demo_bundle(datetime(2025, 1, 14, 9, 7, 30))
    assert naive == demo.build_demo_bundle(WINTER_NOW)
    assert _by_type(demo.build_demo_bundle(), "Practitioner")


def test_stays_small() -> None:
    start = datetime(2025, 1, 6, 0, 30, tzinfo=PARIS)  # a Monday; try every 3 h for a week
    for step in range(0, 7 * 24, 3):
        now = start + timedelta(hours=step)
        count = len(_by_type(demo.build_demo_bundle(now, days=3), "Slot"))
        assert 0 < count < 600, (now, count)


# --- (c) references ----------------------------------------------------------------------------


@pytest.mark.parametrize("now", [WINTER_NOW, MARCH_NOW], ids=str)
def test_every_reference_resolves(now: datetime) -> None:
    bundle = demo.build_demo_bundle(now)
    index = _index(bundle)
    for resource in _resources(bundle):
        contained_ids = {c["id"] for c in resource.get("contained", [])}
        for reference in _references(resource):
            if reference.startswith("#"):
                assert reference[1:] in contained_ids, (resource["id"], reference)
            else:
                assert re.fullmatch(r"[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}", reference), reference
                assert reference in index, (resource["id"], reference)


# --- (d) determinism ---------------------------------------------------------------------------


@pytest.mark.parametrize("now", NOWS, ids=str)
def test_deterministic_for_a_fixed_now(now: datetime) -> None:
    first = json.dumps(demo.build_demo_bundle(now), sort_keys=False)
    second = json.dumps(demo.build_demo_bundle(now), sort_keys=False)
    assert first == second


def test_busy_and_free_slots_mixed(bundle: FhirJson) -> None:
    statuses = {slot["status"] for slot in _by_type(bundle, "Slot")}
    assert statuses == {"free", "busy"}


# --- (e) profiles ------------------------------------------------------------------------------


def _expected_profile(
    resource: FhirJson,
    index: dict[str, FhirJson],
    referrers: set[tuple[str, str]],
    contained: bool,
) -> str:
    """The SAS profile a resource should declare, worked out from its role in the data set."""
    kind = resource["resourceType"]
    key = f"{kind}/{resource['id']}"
    if kind == "Practitioner":
        return SAS + "FrPractitionerAgregateur"
    if kind == "PractitionerRole":
        return SAS + "FrPractitionerRoleExerciceAgregateur"
    if kind == "Location":
        return SAS + "FrLocationAgregateur" if contained else IG + "sas-sos-location-aggregator"
    if kind == "HealthcareService":
        return IG + "sas-cpts-healthcareservice-aggregator"
    if kind == "Organization":
        if ("HealthcareService", key) in referrers:
            return IG + "sas-cpts-organization-aggregator"
        assert ("Location", key) in referrers, f"{key} is neither a CPTS nor a SOS structure"
        return IG + "sas-sos-organization-aggregator"
    if kind == "Schedule":
        actors = [actor["reference"] for actor in resource["actor"]]
        if all(a.startswith("Location/") for a in actors):
            return IG + "sas-sos-schedule-aggregator"
        return SAS + "FrScheduleAgregateur"
    if kind == "Slot":
        if resource["status"] != "free":
            return FR_SLOT  # the SAS Slot profiles fix status = free
        schedule = index[resource["schedule"]["reference"]]
        if schedule["actor"][0]["reference"].startswith("Location/"):
            return IG + "sas-sos-slot-aggregator"
        codes = {c["code"] for st in resource["serviceType"] for c in st.get("coding", [])}
        return IG + "sas-cpts-slot-aggregator" if "604" in codes else SAS + "FrSlotAgregateur"
    raise AssertionError(f"unexpected resource type {kind}")


def test_each_resource_declares_its_sas_profile(bundle: FhirJson) -> None:
    index = _index(bundle)
    # (type of the referring resource, reference): tells a CPTS from a SOS Organization.
    referrers = {(r["resourceType"], ref) for r in index.values() for ref in _references(r)}
    seen: set[str] = set()
    for resource in _resources(bundle):
        expected = _expected_profile(resource, index, referrers, contained=False)
        assert resource["meta"]["profile"] == [expected], resource["id"]
        seen.add(expected)
        for inner in resource.get("contained", []):
            inner_expected = _expected_profile(inner, index, referrers, contained=True)
            assert inner["meta"]["profile"] == [inner_expected]
            seen.add(inner_expected)
    # Every scenario is represented.
    assert {
        SAS + "FrSlotAgregateur",
        IG + "sas-cpts-slot-aggregator",
        IG + "sas-sos-slot-aggregator",
        SAS + "FrLocationAgregateur",
    } <= seen


# --- SAS test kit checks that are about data (TEST-KIT.md §4) ----------------------------------


def test_practitioners_and_roles_match_the_test_kit(bundle: FhirJson) -> None:
    for practitioner in _by_type(bundle, "Practitioner"):
        (identifier,) = practitioner["identifier"]
        assert identifier["system"] == RPPS_SYSTEM
        assert identifier["type"]["coding"] == [
            {"system": "http://interopsante.org/fhir/CodeSystem/fr-v2-0203", "code": "IDNPS"}
        ]
        assert re.fullmatch(r"8\d{11}", identifier["value"])
        assert _luhn_ok(identifier["value"][1:]), "RPPS key digit"
        assert practitioner["name"][0]["family"] and practitioner["name"][0]["given"]
        assert all(t["value"].endswith("@example.org") for t in practitioner["telecom"])
    for role in _by_type(bundle, "PractitionerRole"):
        (location,) = role["contained"]
        assert role["location"] == [{"reference": f"#{location['id']}"}]
        assert location["address"]["line"] and location["address"]["city"]
        assert re.fullmatch(r"\d{5}", location["address"]["postalCode"])
        assert all(re.fullmatch(r"\+33\d{9}", t["value"]) for t in role["telecom"])
        org_id = role["organization"]["identifier"]
        assert org_id["system"] == IDNST_SYSTEM
        assert re.fullmatch(r"1\d{9}|3\d{14}|4\d{14}", org_id["value"])


def test_scenarios_the_test_kit_needs(bundle: FhirJson) -> None:
    roles = _by_type(bundle, "PractitionerRole")
    schedules = _by_type(bundle, "Schedule")

    def places(practitioner_id: str) -> list[str]:
        ref = f"Practitioner/{practitioner_id}"
        return [r["id"] for r in roles if r["practitioner"]["reference"] == ref]

    assert len(places("ps-martin")) == 1  # single-location PS
    assert len(places("ps-durand")) == 2  # two-location PS
    for role_id in places("ps-durand") + places("ps-martin") + places("ps-lefebvre"):
        (schedule,) = [
            s for s in schedules if {"reference": f"PractitionerRole/{role_id}"} in s["actor"]
        ]
        practitioner = next(r for r in roles if r["id"] == role_id)["practitioner"]
        assert practitioner in schedule["actor"]
    # ps-lefebvre's slots go through two CPTS, some slots through both at once.
    index = _index(bundle)
    services_per_slot = [
        {
            ext["valueReference"]["reference"]
            for st in slot["serviceType"]
            for ext in st.get("extension", [])
            if ext["url"] == EXT_SERVICE_TYPE
        }
        for slot in _by_type(demo.build_demo_bundle(datetime(2025, 1, 10, 8, tzinfo=PARIS)), "Slot")
    ]
    assert {frozenset(s) for s in services_per_slot if s} >= {
        frozenset({"HealthcareService/cpts-erdre"}),
        frozenset({"HealthcareService/cpts-erdre", "HealthcareService/cpts-sevre"}),
    }
    providers = {
        index[f"HealthcareService/{c}"]["providedBy"]["reference"]
        for c in ("cpts-erdre", "cpts-sevre")
    }
    assert providers == {"Organization/cpts-erdre", "Organization/cpts-sevre"}


def test_structures_identifiers(bundle: FhirJson) -> None:
    index = _index(bundle)
    for key, pattern in (
        ("Organization/cpts-erdre", r"1\d{9}"),
        ("Organization/cpts-sevre", r"1\d{9}"),
        ("Organization/sos-estuaire", r"3\d{14}"),
    ):
        organization = index[key]
        (identifier,) = organization["identifier"]
        assert identifier["system"] == IDNST_SYSTEM
        assert re.fullmatch(pattern, identifier["value"])
        assert organization["name"] and organization["telecom"]
    siret = index["Organization/sos-estuaire"]["identifier"][0]["value"][1:]
    assert _luhn_ok(siret) and _luhn_ok(siret[:9]), "SIRET and SIREN key digits"
    for location in _by_type(bundle, "Location"):
        assert location["managingOrganization"] == {"reference": "Organization/sos-estuaire"}
        assert re.fullmatch(r"\d{5}", location["address"]["postalCode"])


def test_slots_match_the_test_kit(bundle: FhirJson) -> None:
    allowed_security = {
        SAS + "FrSlotAgregateur": {"PUBLIC", "PRO", "SNP"},
        IG + "sas-cpts-slot-aggregator": {"CPTS"},  # the kit wants only CPTS on CPTS slots
        IG + "sas-sos-slot-aggregator": {"PUBLIC", "SNP"},
        FR_SLOT: {"PUBLIC", "PRO", "SNP", "CPTS"},
    }
    for slot in _by_type(bundle, "Slot"):
        (profile,) = slot["meta"]["profile"]
        security = slot["meta"]["security"]
        assert security and all(s["system"] == TYPE_CRENEAU for s in security)
        assert {s["code"] for s in security} <= allowed_security[profile], slot["id"]
        for service_type in slot["serviceType"]:
            for coding in service_type.get("coding", []):
                assert (coding["system"], coding["code"]) in {
                    (ACT_CODE, "AMB"),
                    (ACT_CODE, "VR"),
                    (ACT_CODE, "HH"),
                    (TRE_R66, "604"),
                }
            has_ref = any(e["url"] == EXT_SERVICE_TYPE for e in service_type.get("extension", []))
            is_604 = any(c["code"] == "604" for c in service_type.get("coding", []))
            assert has_ref == is_604, "the CPTS reference goes with the 604 coding, only there"
        assert slot["appointmentType"]["coding"][0]["code"] in {"ROUTINE", "WALKIN"}
        assert slot["comment"].startswith("https://") and "?" in slot["comment"]


def test_main_writes_the_bundle(tmp_path: Path) -> None:
    out = tmp_path / "var" / "demo-bundle.json"
    assert demo.main(["--days", "1", "--out", str(out)]) == 0
    written = json.loads(out.read_text(encoding="utf-8"))
    assert written["type"] == "transaction" and written["entry"]


# --- (f) against the published profiles' snapshots ---------------------------------------------


def _sas_package_dir() -> Path | None:
    roots = [REPO.parent / "shared" / "reference" / "fhir-packages"]
    if os.environ.get("FHIR_PACKAGE_PATH"):
        roots.insert(0, Path(os.environ["FHIR_PACKAGE_PATH"]))
    for root in roots:
        package = root / SAS_PACKAGE / "package"
        if package.is_dir():
            return package
    return None


def _structure_definitions(package: Path) -> dict[str, FhirJson]:
    definitions: dict[str, FhirJson] = {}
    for path in package.glob("StructureDefinition-*.json"):
        definition = json.loads(path.read_text(encoding="utf-8"))
        if definition.get("kind") == "resource":
            definitions[definition["url"]] = definition
    return definitions


def _values(node: Any, steps: list[str]) -> list[Any]:
    """Values at a dotted path below ``node``, lists flattened (FHIRPath-like)."""
    current = [node]
    for step in steps:
        following: list[Any] = []
        for item in current:
            if isinstance(item, dict) and step in item:
                value = item[step]
                following.extend(value if isinstance(value, list) else [value])
        current = following
    return current


def _matches_pattern(value: Any, pattern: Any) -> bool:
    """FHIR pattern[x] semantics: every element of the pattern is found in the value."""
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(
            key in value and _matches_pattern(value[key], sub) for key, sub in pattern.items()
        )
    if isinstance(pattern, list):
        return isinstance(value, list) and all(
            any(_matches_pattern(v, p) for v in value) for p in pattern
        )
    return bool(value == pattern)


def _declared(bundle: FhirJson) -> Iterator[tuple[FhirJson, str]]:
    for resource in _resources(bundle):
        for inner in [resource, *resource.get("contained", [])]:
            for profile in inner["meta"]["profile"]:
                yield inner, profile


@pytest.mark.parametrize("now", [WINTER_NOW, MARCH_NOW], ids=str)
def test_required_and_pattern_elements_of_the_sas_snapshots(now: datetime) -> None:
    package = _sas_package_dir()
    if package is None:
        pytest.skip(
            f"{SAS_PACKAGE} not found (looked in $FHIR_PACKAGE_PATH and "
            "../shared/reference/fhir-packages/): snapshot checks not run"
        )
    definitions = _structure_definitions(package)
    bundle = demo.build_demo_bundle(now)
    checked: set[str] = set()
    for resource, profile in _declared(bundle):
        if profile == FR_SLOT:
            continue  # FR Core is not in the SAS package (busy slots only)
        assert profile in definitions, f"{profile} is not a profile of {SAS_PACKAGE}"
        checked.add(profile)
        for element in definitions[profile]["snapshot"]["element"]:
            path: str = element["path"]
            if ":" in element["id"] or "[x]" in path:
                continue  # slices and choice types: not this simple checker's business
            steps = path.split(".")[1:]
            if len(steps) == 1 and element.get("min", 0) >= 1:
                assert _values(resource, steps), (
                    f"{resource['id']}: {path} is required by {profile}"
                )
            for key, pattern in element.items():
                if key.startswith(("pattern", "fixed")):
                    for value in _values(resource, steps):
                        assert _matches_pattern(value, pattern), (
                            f"{resource['id']}: {path} = {value!r}, {profile} wants {pattern!r}"
                        )
    assert len(checked) == 12  # every resource profile of the guide but Appointment/regulator


def test_the_regulator_accounts_are_dev_idp_professionals() -> None:
    from auth.dev_idp import PROFESSIONALS

    by_login = {pro.login: pro for pro in PROFESSIONALS}
    bundle = demo.build_regulator_bundle()
    assert bundle["type"] == "transaction" and bundle["entry"]
    for (login, national_id, given, family), entry in zip(
        demo.REGULATORS, bundle["entry"], strict=True
    ):
        account = entry["resource"]
        assert entry["request"] == {"method": "PUT", "url": f"Practitioner/{account['id']}"}
        assert account["meta"]["profile"] == [demo.PROFILE_REGULATOR]
        assert account["identifier"][0]["value"] == national_id == by_login[login].national_id
        assert (given, family) == (by_login[login].given_name, by_login[login].family_name)
        assert account["active"] is True
