"""Hostile JSON feeds become issues with a location, never exceptions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mappings import registry
from mappings.contract import MappingOptions, MappingResult
from mappings.jsoninput import pointer, read_json, read_object

OPTIONS = MappingOptions(source="feed.json", max_bytes=1_000_000, max_depth=64)


def read(data: bytes) -> tuple[object, MappingResult]:
    result = MappingResult()
    return read_json(data, OPTIONS, result), result


def only_issue(result: MappingResult) -> tuple[str, str, str]:
    [issue] = result.issues
    assert issue.severity == "error"
    return issue.code, issue.message, issue.location


def test_a_good_document() -> None:
    document, result = read('\ufeff{"slots": [1, 2]}'.encode())
    assert document == {"slots": [1, 2]} and result.issues == []


def test_nested_10000_deep_is_refused_without_recursion() -> None:
    document, result = read(b"[" * 10_000 + b"]" * 10_000)
    assert document is None
    code, _, location = only_issue(result)
    assert code in ("too-costly", "structure") and location.startswith("feed.json")


def test_nested_beyond_the_limit_names_where() -> None:
    deep = b'{"a": ' * 70 + b"1" + b"}" * 70
    document, result = read(deep)
    assert document is None
    code, message, location = only_issue(result)
    assert code == "too-costly" and "64" in message and location.startswith("feed.json#/a/a")


def test_truncated_names_the_line() -> None:
    document, result = read(b'{\n  "slots": [\n    {"start": "2026-06-12T10:00"')
    assert document is None
    code, _, location = only_issue(result)
    assert code == "structure" and location == "feed.json:3"


def test_wrong_encoding_names_the_byte() -> None:
    document, result = read('{"nom": "Hélène"}'.encode("latin-1"))
    assert document is None
    code, message, _ = only_issue(result)
    assert code == "invalid" and "byte 10" in message


def test_too_large() -> None:
    document, result = read(b" " * 1_000_001)
    assert document is None and only_issue(result)[0] == "too-costly"


def test_pointers_are_escaped() -> None:
    assert pointer("", "a/b", "m~n", 3) == "/a~1b/m~0n/3"


@given(st.binary(max_size=2000))
def test_any_bytes_give_a_document_or_an_issue(data: bytes) -> None:
    document, result = read(data)
    assert (document is None) == bool(result.issues)


def test_read_object_refuses_other_json_values_naming_what_was_expected() -> None:
    result = MappingResult()
    assert read_object(b'[{"slots": []}]', OPTIONS, result, "a Keldoc timetable") is None
    assert only_issue(result) == (
        "structure",
        "expected a JSON object (a Keldoc timetable)",
        "feed.json",
    )
    assert read_object(b'{"slots": []}', OPTIONS, MappingResult(), "x") == {"slots": []}


@pytest.mark.parametrize(
    "name",
    ["doctolib", "keldoc", "maiia", "ordoclic", "mapharma", "valwin", "bimedoc", "mesoigner"],
)
def test_object_formats_report_a_json_array_and_map_nothing(name: str) -> None:
    result = registry.mapper(name).map(b"[1, 2]", OPTIONS)
    assert result.feeds == []
    code, message, location = only_issue(result)
    assert (code, location) == ("structure", "feed.json")
    assert message.startswith("expected a JSON object (")
