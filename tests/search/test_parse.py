"""The query parser: typed values, modifiers, controls, and 400s for bad input (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from fhir_server.core.errors import FhirError, Incorrect
from fhir_server.core.fhirtime import PARIS, parse_range
from fhir_server.search import parse as p
from fhir_server.search.parameters import default_registry

REG = default_registry()


def parse(res_type: str, *pairs: tuple[str, str]) -> p.Query:
    return p.parse(REG, res_type, list(pairs), default_tz=PARIS)


def values(res_type: str, name: str, value: str) -> tuple[p.SearchValue, ...]:
    (criterion,) = parse(res_type, (name, value)).criteria
    return criterion.values


def refused(res_type: str, name: str, value: str) -> FhirError:
    with pytest.raises(Incorrect) as info:
        parse(res_type, (name, value))
    assert info.value.status == 400
    return info.value


# Text for systems and codes: anything printable, including the characters that need escaping.
texts = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=30)


@given(system=texts, code=texts)
@example(system="urn:oid:1.2.250.1.71.4.2.1", code="810101288385")
@example(system="a|b", code=r"c,d\e$")
def test_token_round_trips(system: str, code: str) -> None:
    raw = f"{p.escape(system)}|{p.escape(code)}"
    assert values("Practitioner", "identifier", raw) == (p.TokenValue(system, code),)


@given(code=texts)
def test_token_forms(code: str) -> None:
    escaped = p.escape(code)
    assert values("Slot", "status", escaped) == (p.TokenValue(None, code),)
    assert values("Slot", "status", f"|{escaped}") == (p.TokenValue("", code),)
    assert values("Slot", "status", f"{escaped}|") == (p.TokenValue(code, None),)


@given(
    items=st.lists(texts.filter(lambda t: not t.startswith(" ")), min_size=1, max_size=6),
    spaces=st.lists(st.integers(0, 3), min_size=6, max_size=6),
)
def test_comma_lists_with_spaces_after_commas(items: list[str], spaces: list[int]) -> None:
    raw = p.escape(items[0]) + "".join(
        "," + " " * n + p.escape(item) for n, item in zip(spaces, items[1:], strict=False)
    )
    assert values("Practitioner", "family", raw) == tuple(p.StringValue(i) for i in items)


@given(text=st.text(max_size=40))
def test_escape_round_trips(text: str) -> None:
    assert p.unescape(p.escape(text)) == text
    assert p.split_escaped(p.escape(text), ",") == [p.escape(text)]


moments = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2100, 12, 31), timezones=st.just(UTC)
)


@given(prefix=st.sampled_from(p.PREFIXES), moment=moments, precision=st.integers(0, 4))
def test_date_prefixes(prefix: str, moment: datetime, precision: int) -> None:
    text = [
        f"{moment:%Y}",
        f"{moment:%Y-%m-%d}",
        f"{moment:%Y-%m-%dT%H:%M}Z",
        f"{moment:%Y-%m-%dT%H:%M:%S}+02:00",
        f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}",
    ][precision]
    written = text if prefix == "eq" and precision % 2 else prefix + text
    (value,) = values("Slot", "start", written)
    assert value == p.DateValue(prefix, *parse_range(text, PARIS))


def test_dates_as_the_sas_platform_sends_them() -> None:
    (with_offset,) = values("Slot", "start", "ge2024-06-12T16:20:00.000+02:00")
    (space_for_plus,) = values("Slot", "start", "ge2024-06-12T16:20:00.000 02:00")
    (no_offset,) = values("Slot", "start", "ge2024-06-12T16:20:00.000")
    (no_millis,) = values("Slot", "start", "ge2024-06-12T16:20:00")
    assert with_offset == space_for_plus == no_offset
    assert isinstance(no_millis, p.DateValue)
    assert no_millis.low == datetime(2024, 6, 12, 14, 20, tzinfo=UTC)
    assert no_millis.high - no_millis.low == timedelta(seconds=1)
    (winter,) = values("Slot", "start", "2024-12-12T16:20:00")
    assert isinstance(winter, p.DateValue) and winter.low.hour == 15


@given(garbage=st.text(max_size=40))
@example(garbage="9999-12-31T23:59:59-05:00")
@example(garbage="0001-01-01")
@example(garbage="2024-02-30")
@example(garbage="2024\n")
@example(garbage="xx2024")
@example(garbage="ge")
def test_any_date_value_parses_or_is_a_400(garbage: str) -> None:
    try:
        query = parse("Slot", ("start", garbage))
    except Incorrect as error:
        assert error.status == 400 and "start" in str(error)
        return
    assert all(isinstance(v, p.DateValue) for c in query.criteria for v in c.values)


names = st.sampled_from(
    ["start", "status", "schedule", "identifier", "_id", "_lastUpdated", "_profile",
     "_count", "_sort", "_summary", "_total", "identifier:of-type", "status:not",
     "start:missing", "schedule:Schedule", "status:text", "x"]
)  # fmt: skip


@given(pairs=st.lists(st.tuples(names, st.text(max_size=20)), max_size=4))
def test_any_query_parses_or_is_a_400(pairs: list[tuple[str, str]]) -> None:
    try:
        parse("Slot", *pairs)
    except Incorrect as error:
        assert error.status == 400


@given(number=st.decimals(allow_nan=False, allow_infinity=False, places=3))
def test_numbers_keep_their_precision(number: Decimal) -> None:
    value = p.parse_number("n", REG.get("Slot", "start"), f"gt{number}")  # type: ignore[arg-type]
    assert value.prefix == "gt" and value.value == number
    assert value.low < number < value.high
    assert value.high - value.low == Decimal("0.001")


def test_token_modifiers() -> None:
    (of_type,) = values("Practitioner", "identifier:of-type", "http://t|RPPS|8101")
    assert of_type == p.OfTypeValue("http://t", "RPPS", "8101")
    assert values("Practitioner", "communication:text", "Fran") == (p.TextValue("Fran"),)
    (not_,) = parse("Slot", ("status:not", "free")).criteria
    assert not_.modifier == "not" and not_.values == (p.TokenValue(None, "free"),)
    refused("Practitioner", "identifier:of-type", "RPPS|8101")
    assert refused("Slot", "status:in", "http://vs").issues[0].code == "not-supported"


def test_references() -> None:
    assert values("Slot", "schedule", "Schedule/s1") == (p.ReferenceValue("Schedule", "s1"),)
    assert values("Slot", "schedule", "s1") == (p.ReferenceValue(None, "s1"),)
    assert values("Slot", "schedule:Schedule", "s1") == (p.ReferenceValue("Schedule", "s1"),)
    url = "https://vendor.example/fhir/Schedule/s1"
    assert values("Slot", "schedule", url) == (p.ReferenceValue(url=url),)
    refused("Slot", "schedule:Practitioner", "p1")  # not a target of Slot.schedule
    refused("Schedule", "actor:Practitioner", "Location/l1")


def test_missing_takes_a_boolean() -> None:
    assert values("Slot", "start:missing", "true") == (p.MissingValue(True),)
    assert values("Slot", "start:missing", "false") == (p.MissingValue(False),)
    refused("Slot", "start:missing", "yes")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("start", "zz2024"),  # unknown prefix
        ("start", "2024-06-31"),
        ("start:exact", "2024"),  # modifier not allowed on dates
        ("family:nope", "x"),
        ("status:exact", "free"),
        ("_count", "-1"),
        ("_count", "ten"),
        ("_summary", "maybe"),
        ("_count:x", "1"),
        ("_lastUpdated:missing", "true"),
    ],
)
def test_bad_input_names_the_parameter(name: str, value: str) -> None:
    res_type = "Practitioner" if name.startswith("family") else "Slot"
    error = refused(res_type, name, value)
    assert error.issues[0].expression == (name,)
    assert name in error.issues[0].diagnostics


@pytest.mark.parametrize(
    "name",
    ["schedule.actor:Practitioner.identifier", "_has:Slot:schedule:status", "near", "_text"],
)
def test_not_supported_yet(name: str) -> None:
    error = refused("Location" if name == "near" else "Slot", name, "x")
    assert error.issues[0].code == "not-supported"


def test_controls_and_unknown_names() -> None:
    query = parse(
        "Slot",
        ("status", "free"),
        ("_count", "1000"),
        ("_count", "2"),  # the last one wins
        ("_sort", "-start,_id"),
        ("_include", "Slot:schedule"),
        ("_include:iterate", "Schedule:actor"),
        ("_revinclude", "Appointment:slot"),
        ("_summary", "count"),
        ("_total", "accurate"),
        ("_elements", "start, end"),
        ("_format", "json"),
        ("_sort", "nope"),
        ("foo", "bar"),
        ("foo:exact", "bar"),
    )
    assert query.count == 2
    assert [(k.param.code, k.descending) for k in query.sort] == [("start", True), ("_id", False)]
    assert query.include == [
        p.Include("Slot:schedule"),
        p.Include("Schedule:actor", iterate=True),
        p.Include("Appointment:slot", reverse=True),
    ]
    assert (query.summary, query.total, query.elements) == ("count", "accurate", ["start", "end"])
    assert query.controls == {"_format": "json"}
    assert query.unknown == ["_sort=nope", "foo", "foo:exact"]
    assert [c.name for c in query.criteria] == ["status"]


def test_repeated_parameters_are_anded_and_empty_ones_ignored() -> None:
    query = parse("Slot", ("start", "ge2024-06-12"), ("start", "le2024-06-15"), ("status", ""))
    assert [c.name for c in query.criteria] == ["start", "start"]
