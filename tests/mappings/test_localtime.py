"""Vendor times: offsets in every spelling, naive Paris times across both DST changes, and
the SAS instant form."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mappings.localtime import TimeProblem, aware, localise, parse_datetime, sas_instant

PARIS = ZoneInfo("Europe/Paris")


@pytest.mark.parametrize(
    ("text", "utc"),
    [
        ("2026-06-12T08:00:00Z", "2026-06-12T08:00:00+00:00"),
        ("2026-06-12T10:00:00+02:00", "2026-06-12T08:00:00+00:00"),
        ("2026-06-12T10:00:00.000+0200", "2026-06-12T08:00:00+00:00"),
        ("2026-01-12T10:00:00+01:00", "2026-01-12T09:00:00+00:00"),
    ],
)
def test_offsets_in_every_spelling(text: str, utc: str) -> None:
    assert parse_datetime(text).astimezone(UTC).isoformat() == utc


@pytest.mark.parametrize("text", ["", "tomorrow", "2026-13-01T10:00:00", 12, None, "9" * 100])
def test_what_is_not_a_time(text: object) -> None:
    with pytest.raises(TimeProblem):
        parse_datetime(text)


def test_naive_times_are_paris_wall_clock() -> None:
    summer, note = aware("2026-06-12T10:00:00", PARIS)
    winter, _ = aware("2026-01-12T10:00:00", PARIS)
    assert note is None
    assert sas_instant(summer, PARIS) == "2026-06-12T10:00:00.000+02:00"
    assert sas_instant(winter, PARIS) == "2026-01-12T10:00:00.000+01:00"


def test_the_march_gap_moves_forward_and_says_so() -> None:
    moved, note = localise(datetime(2026, 3, 29, 2, 30), PARIS)
    assert sas_instant(moved, PARIS) == "2026-03-29T03:30:00.000+02:00"
    assert note is not None and "does not exist" in note


def test_the_october_hour_takes_the_first_and_says_so() -> None:
    first, note = localise(datetime(2026, 10, 25, 2, 30), PARIS)
    assert sas_instant(first, PARIS) == "2026-10-25T02:30:00.000+02:00"
    assert note is not None and "twice" in note
    after, quiet = localise(datetime(2026, 10, 25, 3, 30), PARIS)
    assert sas_instant(after, PARIS) == "2026-10-25T03:30:00.000+01:00" and quiet is None


def test_a_naive_datetime_has_no_instant() -> None:
    with pytest.raises(ValueError):
        sas_instant(datetime(2026, 6, 12, 10, 0), PARIS)


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)))
def test_localise_always_gives_an_aware_time_near_the_wall_clock(naive: datetime) -> None:
    local, _ = localise(naive, PARIS)
    assert local.tzinfo is not None
    assert abs((local.replace(tzinfo=None) - naive).total_seconds()) <= 3600


@given(
    st.datetimes(min_value=datetime(1900, 1, 1), timezones=st.just(UTC)),
    st.sampled_from(["Europe/Paris", "America/Cayenne", "Indian/Reunion", "UTC"]),
)
def test_the_sas_instant_is_the_strftime_form(moment: datetime, zone: str) -> None:
    # (strftime writes years below 1000 with fewer than 4 digits: those are left out)
    local = moment.astimezone(ZoneInfo(zone))
    offset = int(local.utcoffset().total_seconds()) // 60  # type: ignore[union-attr]
    sign, (hours, minutes) = "+" if offset >= 0 else "-", divmod(abs(offset), 60)
    expected = f"{local:%Y-%m-%dT%H:%M:%S}.000{sign}{hours:02d}:{minutes:02d}"
    assert sas_instant(moment, ZoneInfo(zone)) == expected
