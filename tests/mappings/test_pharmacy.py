"""Pharmacy formats carry no RPPS: the RPPS table gives it, an unknown pharmacy is rejected
and reported, never given an invented RPPS."""

from __future__ import annotations

import orjson

from mappings import registry
from mappings.contract import MappingOptions

SLOTS = {
    "id": "ph-9",
    "street": "2 rue Basse",
    "city": "Rennes",
    "postcode": "35000",
    "slots": [{"datetime": "2026-06-15T08:00:00Z"}],
}


def test_an_unknown_pharmacy_is_rejected_with_no_rpps() -> None:
    result = registry.mapper("bimedoc").map(orjson.dumps(SLOTS), MappingOptions(source="b.json"))
    (feed,) = result.feeds
    assert feed.rejected and feed.rpps is None and feed.slots == []
    assert [(i.code, i.practitioner) for i in result.issues if i.severity == "error"] == [
        ("not-found", "ph-9")
    ]


def test_a_known_pharmacy_is_its_pharmacists_offer() -> None:
    options = MappingOptions(rpps_table={"ph-9": "10000000015"})
    (feed,) = registry.mapper("bimedoc").map(orjson.dumps(SLOTS), options).feeds
    assert not feed.rejected and feed.rpps == "10000000015"
    assert feed.resources[0]["identifier"][0]["value"] == "810000000015"


def test_a_malformed_rpps_in_the_table_is_not_used() -> None:
    options = MappingOptions(rpps_table={"ph-9": "1234"})
    (feed,) = registry.mapper("bimedoc").map(orjson.dumps(SLOTS), options).feeds
    assert feed.rejected and feed.rpps is None


def test_answers_naming_no_pharmacy_need_the_owner_key() -> None:
    for fmt, body in (("mapharma", {"2026-06-15": []}), ("mesoigner", {"slots": []})):
        result = registry.mapper(fmt).map(orjson.dumps(body), MappingOptions())
        assert result.feeds == [] and result.issues[0].code == "required"
