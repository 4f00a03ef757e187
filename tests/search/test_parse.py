"""The query parser: typed values, modifiers, controls, and 400s for bad input (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from fhir_server.core.errors import FhirError, Incorrect
from fhir_server.core.fhirtime import PARIS, parse_range
from fhir_server.core.types import SERVED_TYPES
from fhir_server.search.query import chain
from fhir_server.search.query import parse as p
from fhir_server.search.registry.parameters import default_registry

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


@pytest.mark.parametrize("name", ["_text", "_content"])
def test_not_supported_yet(name: str) -> None:
    error = refused("Slot", name, "x")
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


# -- chains and _has ------------------------------------------------------------------------

SERVED = [t for t in SERVED_TYPES if REG.for_type(t)]
_INDEXED = {"token", "string", "date", "reference", "uri", "number", "quantity"}


def _terminal_codes(types: tuple[str, ...]) -> list[str]:
    """Parameters a chain may end with on ``types``: indexed, same type wherever defined."""
    kinds: dict[str, set[str]] = {}
    for t in types:
        for code, param in REG.for_type(t).items():
            indexed = param.type in _INDEXED or param.expression == "Location.position"
            if param.expression and indexed and code not in ("_id", "_lastUpdated"):
                kinds.setdefault(code, set()).add(param.type)
    return sorted(code for code, k in kinds.items() if len(k) == 1)


def _served_targets(types: tuple[str, ...], code: str) -> tuple[str, ...]:
    targets: list[str] = []
    for t in types:
        prm = REG.get(t, code)
        if prm is not None and prm.type == "reference":
            targets += [x for x in prm.target or SERVED if x in SERVED and x not in targets]
    return tuple(targets)


@st.composite
def chained_names(draw: st.DrawFn) -> tuple[str, str]:
    """A resource type and a valid chained name on it, built from the R4 definitions."""
    start = draw(st.sampled_from(SERVED))
    types: tuple[str, ...] = (start,)
    name = ""
    for _ in range(draw(st.integers(1, chain.MAX_LINKS))):
        forward = {
            code: targets
            for code in {c for t in types for c in REG.for_type(t)}
            if (targets := _served_targets(types, code))
        }
        reverse = [
            (s, c)
            for s in SERVED
            for c, prm in REG.for_type(s).items()
            if prm.type == "reference" and (not prm.target or set(prm.target) & set(types))
        ]
        if forward and (not reverse or draw(st.booleans())):
            code = draw(st.sampled_from(sorted(forward)))
            if draw(st.booleans()):
                typed = draw(st.sampled_from(forward[code]))
                name, types = f"{name}{code}:{typed}.", (typed,)
            else:
                name, types = f"{name}{code}.", forward[code]
        elif reverse:
            source, code = draw(st.sampled_from(reverse))
            name, types = f"{name}_has:{source}:{code}:", (source,)
    return start, name + draw(st.sampled_from(_terminal_codes(types)))


@given(case=chained_names())
@example(case=("Slot", "schedule.actor:Practitioner.identifier"))
@example(case=("Schedule", "actor:Location.organization.identifier"))
@example(case=("Slot", "schedule.actor.name"))
@example(case=("Schedule", "_has:Slot:schedule:start"))
@example(case=("Practitioner", "_has:Schedule:actor:_has:Slot:schedule:status"))
def test_any_valid_chain_round_trips(case: tuple[str, str]) -> None:
    res_type, name = case
    (criterion,) = parse(res_type, (f"{name}:missing", "true")).criteria
    assert render(criterion.path, criterion.param.code, None) == name
    assert criterion.modifier == "missing" and criterion.values == (p.MissingValue(True),)
    types: tuple[str, ...] = (res_type,)
    for link in criterion.path:
        here = link.targets if link.reverse else link.sources
        assert set(here) <= set(types) and here, (link, types)
        for source in link.sources:
            param = REG.get(source, link.code)
            assert param is not None and param.type == "reference"
        types = link.sources if link.reverse else link.targets
    assert set(criterion.res_types) <= set(types) and criterion.res_types
    assert all(REG.get(t, criterion.param.code) is not None for t in criterion.res_types)


chain_words = st.sampled_from(
    ["schedule", "actor", "_has", "Slot", "Schedule", "Practitioner", "Location", "identifier",
     "status", "name", "organization", "near", "_id", "missing", "exact", "Nope", "x", "", " "]
)  # fmt: skip


@given(
    words=st.lists(st.tuples(chain_words, st.sampled_from([".", ":"])), min_size=1, max_size=8),
    tail=chain_words,
    res_type=st.sampled_from(["Slot", "Schedule", "Location", "Practitioner"]),
    value=st.text(max_size=12),
)
@example(words=[("schedule", ".")], tail="", res_type="Slot", value="x")
@example(words=[("schedule", ":")], tail="", res_type="Slot", value="x")  # empty modifier
@example(
    words=[("_has", ":"), ("Slot", ":"), ("schedule", ":")], tail="", res_type="Schedule", value="x"
)
def test_chain_garbage_is_a_400_or_a_query(
    words: list[tuple[str, str]], tail: str, res_type: str, value: str
) -> None:
    name = "".join(w + sep for w, sep in words) + tail
    try:
        query = parse(res_type, (name, value))
    except Incorrect as error:
        assert error.status == 400
        assert error.issues[0].expression == (name,)
        return
    for criterion in query.criteria:
        assert render(criterion.path, criterion.param.code, criterion.modifier) == name


@given(name=st.text(max_size=30), value=st.text(max_size=10))
@example(name="_has", value="x")
@example(name=".", value="x")
@example(name="_has:::", value="x")
def test_any_name_is_a_400_a_query_or_unknown(name: str, value: str) -> None:
    try:
        parse("Slot", (name, value))
    except Incorrect as error:
        assert error.status == 400


def render(links: tuple[chain.Link, ...], code: str, modifier: str | None) -> str:
    """The name a path was read from (the inverse of ``chain.resolve``)."""
    return "".join(map(str, links)) + code + (f":{modifier}" if modifier else "")
