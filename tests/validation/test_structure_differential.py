"""The fast structure walk loses no check of the old walk + ``fhir.resources`` model pass.

``structure_issues`` used to be the JSON walk followed, when the walk found nothing, by the
R4B model (``model_issues``). Now the walk alone checks required elements, required-bound
codes and choice types. Differential: on every package example of the served types and on
mutations of them (an element deleted, a string replaced by junk, a second ``[x]``
variant, a wrong JSON type, an empty value, an unknown or ``_x`` key, a nested resource of
a type the table does not describe), whenever the old check reports an error the new one
does too (it may report more: precise JSON types, unknown codes). ``_legacy_walk`` is the
walk as it was before (commit 736257a), kept here as the reference.
"""

from __future__ import annotations

import copy
import os
import re
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import profiles
from fhir_server.core import fhirtime
from fhir_server.core.errors import Issue
from fhir_server.validation.structure import _primitive_check, model_issues, structure_issues
from tests.conftest import REFERENCE

PACKAGES = REFERENCE / "fhir-packages"
# The R4 regex of time (StructureDefinition-time.json), as the old check used it.
TIME_RE = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?$")
SERVED = {
    "Practitioner",
    "PractitionerRole",
    "Organization",
    "Location",
    "HealthcareService",
    "Schedule",
    "Slot",
    "Appointment",
    "Endpoint",
    "AuditEvent",
    "Bundle",
}


def minimal_slot(**elements: Any) -> dict[str, Any]:
    """A valid R4 Slot with the required elements, plus (or replaced by) ``elements``."""
    return {
        "resourceType": "Slot",
        "schedule": {"reference": "Schedule/1"},
        "status": "free",
        "start": "2024-06-12T16:20:00Z",
        "end": "2024-06-12T16:40:00Z",
        **elements,
    }


def _examples() -> list[tuple[str, dict[str, Any]]]:
    out = []
    folders = sorted(PACKAGES.glob("*/package/example"))
    core = PACKAGES / "hl7.fhir.r4.core#4.0.1" / "package"
    files = [f for d in folders for f in sorted(d.glob("*.json"))]
    files += [f for t in sorted(SERVED) for f in sorted(core.glob(f"{t}-*.json"))]
    for file in files:
        data = orjson.loads(file.read_bytes())
        if isinstance(data, dict) and data.get("resourceType") in SERVED:
            out.append((f"{file.parent.parent.parent.name}/{file.name}", data))
    return out


EXAMPLES = _examples() if PACKAGES.is_dir() else []
needs_examples = pytest.mark.skipif(not EXAMPLES, reason=f"no package examples in {PACKAGES}")


def old_check(resource: dict[str, Any]) -> list[Issue]:
    """``structure_issues`` before: the legacy walk, then the model when the walk is clean."""
    return _legacy_walk(resource) or model_issues(resource)


@needs_examples
@pytest.mark.parametrize(("name", "resource"), EXAMPLES, ids=[n for n, _ in EXAMPLES])
def test_examples_agree(name: str, resource: dict[str, Any]) -> None:
    old, new = old_check(resource), structure_issues(resource)
    assert bool(old) == bool(new), (name, old, new)


# --- mutations -------------------------------------------------------------------------

JUNK: list[Any] = [None, 12, -1, 0, 2**40, 1.5, True, "x", "", " ", [], {}, [1], {"a": 1}]
CHOICE_PREFIXES = sorted(
    {
        path.rsplit(".", 1)[-1][:-3]
        for table in profiles.r4_elements()["types"].values()
        for path in table
        if path.endswith("[x]")
    }
)
VARIANTS: list[tuple[str, Any]] = [
    ("String", "text"),
    ("Boolean", True),
    ("Code", "a-code"),
    ("Integer", 3),
    ("DateTime", "2024-01-01"),
    ("Coding", {"code": "c"}),
    ("Period", {"start": "2024-01-01"}),
    ("Reference", {"reference": "Slot/1"}),
    ("Quantity", {"value": 1}),
]
NESTED: list[Any] = [
    {"resourceType": "Patient", "id": "p1", "gender": "female"},
    {"resourceType": "Patient", "id": "p1", "unknown": 1},
    {"resourceType": "Patient", "birthDate": "2024-02-30"},
    {"resourceType": "Observation", "status": "final"},  # Observation.code is required
    {"resourceType": "NoSuchType"},
    {"resourceType": "Period", "start": "2024"},
    {"resourceType": "Location", "status": "gone"},
    {"resourceType": "Slot"},
]


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every location inside a JSON value (dict keys and list indexes)."""
    out: list[tuple[Any, ...]] = []
    if isinstance(value, dict):
        for key, child in value.items():
            out.append((*path, key))
            out += _paths(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            out.append((*path, index))
            out += _paths(child, (*path, index))
    return out


def _parent(resource: Any, path: tuple[Any, ...]) -> Any:
    for part in path[:-1]:
        resource = resource[part]
    return resource


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    _, original = draw(st.sampled_from(EXAMPLES))
    resource = copy.deepcopy(original)
    for _ in range(draw(st.integers(1, 2))):
        paths = _paths(resource)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, last = _parent(resource, path), path[-1]
        what = draw(
            st.sampled_from(["delete", "text", "junk", "choice", "key", "extension", "nested"])
        )
        if what == "delete":
            del parent[last]
        elif what == "text":
            parent[last] = draw(st.text(max_size=12) | st.from_regex(r"\d{4}-\d\d-\d\d.*"))
        elif what == "junk":
            parent[last] = copy.deepcopy(draw(st.sampled_from(JUNK)))
        elif isinstance(parent, dict) and what == "choice":
            suffix, value = draw(st.sampled_from(VARIANTS))
            prefix = next((p for p in CHOICE_PREFIXES if str(last).startswith(p)), "value")
            parent[prefix + suffix] = copy.deepcopy(value)
        elif isinstance(parent, dict) and what == "key":
            parent[draw(st.sampled_from(["foo", "resourceType", "fhir_comments", "id"]))] = 1
        elif isinstance(parent, dict) and what == "extension":
            parent[f"_{last}"] = copy.deepcopy(
                draw(st.sampled_from([*JUNK, {"extension": [{"url": "u", "valueCode": "x"}]}]))
            )
        elif isinstance(parent, dict):
            parent.setdefault("contained", []).append(copy.deepcopy(draw(st.sampled_from(NESTED))))
    return resource


@needs_examples
@settings(
    max_examples=int(os.environ.get("STRUCTURE_DIFF_EXAMPLES", "1500")),
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
@given(mutated())
def test_mutations_lose_no_error(resource: dict[str, Any]) -> None:
    try:
        old = old_check(resource)
    except Exception as exc:  # the old check could crash (e.g. a contained unknown type)
        old = [Issue("exception", repr(exc))]
    new = structure_issues(resource)
    if old:
        assert new, (old, resource)


PRIMITIVE_VALUES: list[Any] = [
    *["", " ", "x", "a b", "a  b", "a\n", "\n", "@@@", "::", "http://x", "urn:oid:1.2"],
    *["urn:oid:1.02", "urn:uuid:c757873d-ec9a-4326-a141-556f43239520", "urn:uuid:xyz"],
    *["c757873d-ec9a-4326-a141-556f43239520", "AAAA", "AAA", "aGVsbG8=", "<div>x</div>"],
    *["2024", "2024-02-30", "2024-01-01T10:00:00", "2024-01-01T10:00:00Z", "10:00:00"],
    *["2024-01-01T10:00:00+15:00", "23:59:60", "10:00", "1", "-1", "1.5", "1e5", "ab\u00a0"],
    *["\u00a0", "\u00e9", "abc\x00", "a\tb", "x" * 65, "x" * 256, 0, 1, -1, 2**31, -(2**31) - 1],
    *[1.5, 1e300, True, None, [], {}, -0.0, 10**20],
]


@pytest.mark.parametrize("ftype", profiles.r4_elements()["primitives"])
def test_primitive_values_lose_no_error(ftype: str) -> None:
    """Every primitive type (as ``Extension.value[x]``) against odd values."""
    missed = []
    for value in PRIMITIVE_VALUES:
        slot = minimal_slot(extension=[{"url": "u", f"value{ftype[0].upper()}{ftype[1:]}": value}])
        if old_check(slot) and not structure_issues(slot):
            missed.append(value)
    assert missed == []


@settings(max_examples=3000, deadline=None)
@given(
    st.from_regex(
        r"[0-9]{4}(-[0-9]{2}(-[0-9]{2}(T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,4})?)?)?)?"
    ).flatmap(lambda v: st.sampled_from([v, v + "Z", v + "+14:00", v + "-03:30", v[:-1]]))
)
def test_date_checks_are_fhirtime(value: str) -> None:
    """The walk's fast date checks accept exactly what ``fhirtime`` accepts."""
    for ftype, reference in (
        ("date", fhirtime.is_date),
        ("dateTime", fhirtime.is_datetime),
        ("instant", fhirtime.is_instant),
    ):
        assert (_primitive_check(ftype)(value) is None) == reference(value), (ftype, value)


def test_required_code_and_choice_caught_by_the_walk() -> None:
    slot = minimal_slot(
        status="later", extension=[{"url": "u", "valueString": "a", "valueCode": "b"}]
    )
    found = {(i.code, i.expression[0]) for i in structure_issues(slot)}
    assert found == {("code-invalid", "Slot.status"), ("structure", "Slot.extension[0].value")}
    del slot["schedule"], slot["extension"]
    slot["status"] = "free"
    assert [(i.code, i.expression) for i in structure_issues(slot)] == [
        ("required", ("Slot.schedule",))
    ]
    # A required primitive may be replaced by its extension (model semantics).
    slot["schedule"] = {"reference": "Schedule/1"}
    del slot["status"]
    slot["_status"] = {"extension": [{"url": "http://x/absent", "valueCode": "unknown"}]}
    assert structure_issues(slot) == []


def test_r4_extension_value_meta_is_accepted() -> None:
    """The one deliberate difference: ``valueMeta`` is R4 (R4B dropped it, so the R4B model
    rejected it)."""
    slot = minimal_slot(extension=[{"url": "u", "valueMeta": {"versionId": "1"}}])
    assert structure_issues(slot) == []
    assert model_issues(slot)


# --- the walk as it was before (reference for the differential) ------------------------


def _legacy_walk(resource: dict[str, Any]) -> list[Issue]:
    issues: list[Issue] = []
    types: dict[str, dict[str, Any]] = profiles.r4_elements()["types"]
    primitives = set(profiles.r4_elements()["primitives"])

    def error(where: str, message: str, code: str = "structure") -> None:
        issues.append(Issue(code, message, expression=(where,)))

    def children(type_name: str, prefix: str) -> dict[str, dict[str, Any]]:
        depth = prefix.count(".") + 1 if prefix else 0
        out: dict[str, dict[str, Any]] = {}
        for path, info in types.get(type_name, {}).items():
            if (prefix and not path.startswith(prefix + ".")) or path.count(".") != depth:
                continue
            if "ref" in info:
                info = {**info, "types": ["BackboneElement"], "backbone": info["ref"]}
            out[path.rsplit(".", 1)[-1]] = {**info, "path": path}
        return out

    def resolve(kids: dict[str, dict[str, Any]], key: str) -> tuple[dict[str, Any], str] | None:
        if key in kids:
            info = kids[key]
            return info, info["types"][0] if len(info["types"]) == 1 else ""
        for name, info in kids.items():
            if name.endswith("[x]") and key.startswith(name[:-3]):
                for t in info["types"]:
                    if t[:1].upper() + t[1:] == key[len(name) - 3 :]:
                        return info, t
        return None

    def walk_resource(data: Any, where: str) -> None:
        if not isinstance(data, dict):
            error(where, "a resource must be a JSON object")
            return
        rtype = data.get("resourceType")
        if not isinstance(rtype, str):
            error(where, "resourceType is missing")
        elif rtype in types:
            walk_object(data, rtype, "", where, True)

    def walk_object(data: dict[str, Any], tname: str, prefix: str, where: str, top: bool) -> None:
        kids = children(tname, prefix)
        for key, value in data.items():
            if (top and key == "resourceType") or key == "fhir_comments":
                continue
            if key.startswith("_"):
                if resolve(kids, key[1:]) is None:
                    error(f"{where}.{key}", "unknown element")
                continue
            resolved = resolve(kids, key)
            if resolved is None:
                error(f"{where}.{key}", "unknown element")
                continue
            info, ftype = resolved
            if info["max"] != "1":
                if not isinstance(value, list):
                    error(f"{where}.{key}", "must be an array")
                    continue
                if not value:
                    error(f"{where}.{key}", "empty array")
                items = [(f"{where}.{key}[{i}]", v) for i, v in enumerate(value)]
            elif isinstance(value, list):
                error(f"{where}.{key}", "not an array")
                continue
            else:
                items = [(f"{where}.{key}", value)]
            for at, item in items:
                walk_value(item, info, ftype, tname, at)

    def walk_value(item: Any, info: dict[str, Any], ftype: str, owner: str, at: str) -> None:
        if item is None:
            error(at, "null")
        elif ftype in primitives or ftype in ("string", "uri"):
            primitive(item, ftype, at)
        elif ftype == "Resource":
            walk_resource(item, at)
        elif ftype in ("BackboneElement", "Element") and owner:
            if not isinstance(item, dict):
                error(at, "object expected")
            else:
                walk_object(item, owner, info.get("backbone", info["path"]), at, False)
        elif ftype:
            if not isinstance(item, dict) or not item:
                error(at, "non-empty object expected")
            else:
                walk_object(item, ftype, "", at, False)

    checks: dict[str, Any] = {
        "date": fhirtime.is_date,
        "dateTime": fhirtime.is_datetime,
        "instant": fhirtime.is_instant,
        "time": lambda v: bool(TIME_RE.match(v)),
        "id": lambda v: bool(re.match(r"^[A-Za-z0-9\-.]{1,64}$", v)),
        "code": lambda v: bool(re.match(r"^[^\s]+( [^\s]+)*$", v)),
    }

    def primitive(item: Any, ftype: str, at: str) -> None:
        if ftype == "boolean":
            if not isinstance(item, bool):
                error(at, "boolean")
        elif ftype in ("decimal", "integer", "positiveInt", "unsignedInt", "integer64"):
            if isinstance(item, bool) or not isinstance(item, int | float):
                error(at, "number")
            elif ftype != "decimal" and not isinstance(item, int):
                error(at, "integer")
        elif not isinstance(item, str):
            error(at, "string")
        elif item == "" or (item.strip() == "" and ftype != "xhtml"):
            error(at, "empty")
        elif ftype in checks and not checks[ftype](item):
            error(at, "format")

    walk_resource(resource, str(resource.get("resourceType", "Resource")))
    return issues


def test_legacy_reference_is_the_old_walk() -> None:
    """Guard: the reference still flags what the old walk flagged."""
    bad = {"resourceType": "Slot", "start": 12, "foo": 1, "_comment": 1}
    assert {i.expression[0] for i in _legacy_walk(bad)} == {"Slot.start", "Slot.foo"}
