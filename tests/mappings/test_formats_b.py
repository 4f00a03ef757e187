"""What every format of this group (pharmacies, manual-entry CSV, sas-fhir) guarantees:
golden output, output valid against the SAS profiles, idempotence, every reference sample
mapped without raising, and no input at all that makes a mapper raise."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mappings import registry
from mappings.contract import MappingOptions
from tests.mappings import golden_files
from tests.mappings.conftest import validation_errors

PARIS = ZoneInfo("Europe/Paris")
REFERENCE = Path(__file__).parents[3] / "shared" / "reference" / "vendors"
FORMATS = ("mapharma", "valwin", "bimedoc", "mesoigner", "csv", "sas-fhir")
RPPS_TABLE = {
    "pharmacie-ormes": "10000000072",
    "c0ffee00-0000-4000-8000-0000000000aa": "10000000080",
    "agenda-a": "10000000098",
    "agenda-b": "10000000106",
    "5a1c0de0-0000-4000-8000-00000000beef": "10000000114",
    # "c0ffee00-…-bb" is left out: its pharmacy is unknown, its feed rejected
}
PLACES = {
    key: {"line": f"{n} place du Marché", "postalCode": "35000", "city": "Rennes"}
    for n, key in enumerate(RPPS_TABLE, start=1)
}


def options(fmt: str, source: str) -> MappingOptions:
    return MappingOptions(
        source=source,
        vendor="",
        now=datetime(2026, 6, 15, tzinfo=PARIS),
        rpps_table=RPPS_TABLE,
        places=PLACES,
        owner_key="pharmacie-ormes" if fmt in ("mapharma", "mesoigner") else None,
        booking_url="https://rdv.example.org/book" if fmt == "bimedoc" else None,
    )


CASES = sorted(
    (fmt, path)
    for fmt in FORMATS
    for path in (golden_files.DATA / fmt).iterdir()
    if not path.name.endswith(".expected.json")
)


@pytest.mark.parametrize(("fmt", "path"), CASES, ids=[f"{f}/{p.name}" for f, p in CASES])
def test_golden(fmt: str, path: Path) -> None:
    result = registry.mapper(fmt).map(path.read_bytes(), options(fmt, path.name))
    golden_files.check(result, path)


@pytest.mark.parametrize(("fmt", "path"), CASES, ids=[f"{f}/{p.name}" for f, p in CASES])
def test_output_validates_against_the_sas_profiles(fmt: str, path: Path, validator: Any) -> None:
    result = registry.mapper(fmt).map(path.read_bytes(), options(fmt, path.name))
    for feed in result.feeds:
        for resource in [*feed.resources, *feed.slots]:
            assert validation_errors(validator, resource) == [], resource["id"]


@pytest.mark.parametrize(("fmt", "path"), CASES, ids=[f"{f}/{p.name}" for f, p in CASES])
def test_mapping_twice_gives_the_same_resources(fmt: str, path: Path) -> None:
    mapper = registry.mapper(fmt)
    first = golden_files.as_json(mapper.map(path.read_bytes(), options(fmt, path.name)))
    second = golden_files.as_json(mapper.map(path.read_bytes(), options(fmt, path.name)))
    assert first == second


def test_every_format_of_the_group_is_registered() -> None:
    assert set(FORMATS) <= set(registry.formats())


REFERENCE_CASES = sorted(
    (fmt, path)
    for fmt in ("mapharma", "valwin", "bimedoc", "mesoigner")
    if (REFERENCE / fmt).is_dir()
    for path in (REFERENCE / fmt).glob("*.json")
)


@pytest.mark.skipif(not REFERENCE.is_dir(), reason="../shared/reference/vendors is absent")
@pytest.mark.parametrize(
    ("fmt", "path"), REFERENCE_CASES, ids=[f"{f}/{p.name}" for f, p in REFERENCE_CASES]
)
def test_every_reference_sample_maps_without_raising(fmt: str, path: Path, validator: Any) -> None:
    table = {"ph": "10000000015"}
    opts = MappingOptions(source=path.name, owner_key="ph", rpps_table=table)
    result = registry.mapper(fmt).map(path.read_bytes(), opts)
    if path.name.startswith("slots"):  # the slot answers map; the rest are other calls
        assert not [i for i in result.issues if i.severity == "error" and i.practitioner is None]
    else:
        assert result.issues and not any(f.slots for f in result.feeds)
    for feed in result.feeds:
        for resource in feed.slots[:3]:
            assert validation_errors(validator, resource) == []


def test_the_reference_slot_samples_give_slots() -> None:
    if not REFERENCE.is_dir():
        pytest.skip("../shared/reference/vendors is absent")
    counts = {}
    for fmt in ("mapharma", "valwin", "bimedoc", "mesoigner"):
        path = REFERENCE / fmt / ("slots.json" if fmt == "mapharma" else "slots_available.json")
        result = registry.mapper(fmt).map(path.read_bytes(), MappingOptions(owner_key="ph"))
        # no RPPS table: every pharmacy is unknown, reported, and nothing is kept
        assert result.feeds and all(f.rejected and not f.slots for f in result.feeds)
        assert any(i.code == "not-found" for i in result.issues)
        table = {f.key: "10000000015" for f in result.feeds}
        places = {
            f.key: {"line": "1 rue Haute", "postalCode": "35000", "city": "Rennes"}
            for f in result.feeds
        }
        result = registry.mapper(fmt).map(
            path.read_bytes(), MappingOptions(owner_key="ph", rpps_table=table, places=places)
        )
        counts[fmt] = sum(len(f.slots) for f in result.feeds if not f.rejected)
    assert counts == {"mapharma": 72, "valwin": 12, "bimedoc": 133, "mesoigner": 4}


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=30,
)
_SLOTISH = st.fixed_dictionaries(
    {
        "id": st.one_of(st.integers(), st.text(max_size=8)),
        "time": st.text(max_size=6),
        "start": st.text(max_size=25),
        "end": st.text(max_size=25),
        "datetime": st.text(max_size=25),
        "slot_beginning": st.text(max_size=25),
        "number_of_slots": JSON,
        "places_dispo": JSON,
        "meetingConfigurationId": JSON,
    }
)
SHAPED = st.one_of(
    st.dictionaries(st.text(max_size=12), st.lists(_SLOTISH, max_size=3), max_size=3),
    st.fixed_dictionaries({"result": st.lists(_SLOTISH, max_size=3)}),
    st.fixed_dictionaries({"id": JSON, "slots": st.lists(_SLOTISH | JSON, max_size=3)}),
    st.fixed_dictionaries(
        {"slots": st.lists(st.dictionaries(st.text(max_size=12), st.lists(_SLOTISH)), max_size=3)}
    ),
    st.fixed_dictionaries(
        {
            "resourceType": st.just("Bundle"),
            "link": JSON,
            "entry": st.lists(
                st.fixed_dictionaries(
                    {
                        "resource": st.dictionaries(
                            st.sampled_from(
                                [
                                    "resourceType",
                                    "id",
                                    "schedule",
                                    "actor",
                                    "start",
                                    "end",
                                    "identifier",
                                    "practitioner",
                                    "status",
                                    "meta",
                                ]
                            ),
                            JSON
                            | st.sampled_from(
                                ["Slot", "Schedule", "Practitioner", "PractitionerRole"]
                            ),
                        )
                    }
                ),
                max_size=5,
            ),
        }
    ),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fmt=st.sampled_from(FORMATS), document=st.one_of(JSON, SHAPED))
def test_no_json_input_makes_a_mapper_raise(fmt: str, document: object) -> None:
    import orjson

    try:
        data = orjson.dumps(document)
    except (TypeError, orjson.JSONEncodeError):
        return
    result = registry.mapper(fmt).map(
        data, MappingOptions(owner_key="ph", rpps_table={"ph": "10000000015"})
    )
    for feed in result.feeds:
        assert feed.rejected or feed.rpps is not None


@settings(max_examples=150, deadline=None)
@given(fmt=st.sampled_from(FORMATS), data=st.binary(max_size=300))
def test_no_bytes_make_a_mapper_raise(fmt: str, data: bytes) -> None:
    registry.mapper(fmt).map(data, MappingOptions(owner_key="ph"))


@pytest.mark.parametrize("fmt", FORMATS)
def test_hostile_inputs_are_one_issue_each(fmt: str) -> None:
    mapper = registry.mapper(fmt)
    deep = b"[" * 10_000 + b"]" * 10_000
    big = b" " * 2_000
    for data, small in ((deep, 50 * 1024 * 1024), (big, 1_000), (b'{"a": [1, 2', 1_000)):
        result = mapper.map(data, MappingOptions(max_bytes=small, owner_key="ph"))
        assert result.feeds == [] and len(result.issues) == 1
        assert result.issues[0].severity == "error"
