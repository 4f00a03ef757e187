"""The mapping core's fast paths give the same text as the plain code they replace."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from mappings import sas
from mappings.localtime import localise, parse_datetime, sas_instant

PARIS = ZoneInfo("Europe/Paris")
_UNSAFE = re.compile(r"[^A-Za-z0-9.-]+")


def plain_stable_id(vendor: str, *keys: object) -> str:
    """``sas.stable_id`` before its fast path."""
    raw = "-".join(str(k) for k in (vendor, *keys))
    readable = _UNSAFE.sub("-", raw).strip("-.")
    if readable and len(readable) <= 64 and readable == raw:
        return readable
    digest = hashlib.sha256(raw.encode()).hexdigest()[:20]
    return f"{readable[:43].rstrip('-.')}-{digest}"


@given(st.text(max_size=30), st.lists(st.text(max_size=40), max_size=3))
def test_stable_id_is_the_plain_ones(vendor: str, keys: list[str]) -> None:
    assert sas.stable_id(vendor, *keys) == plain_stable_id(vendor, *keys)


def test_stable_id_of_safe_and_edge_keys() -> None:
    for keys in (["slot", "a-1"], ["-x"], ["x."], ["a" * 70], ["é"], [""]):
        assert sas.stable_id("v", *keys) == plain_stable_id("v", *keys)


def test_the_october_hour_keeps_its_two_offsets_though_cached() -> None:
    first = datetime(2026, 10, 25, 2, 30, tzinfo=PARIS)
    second = first.replace(fold=1)
    assert first == second  # one tzinfo: Python compares wall times, so fold must be keyed
    assert sas_instant(first, PARIS) == "2026-10-25T02:30:00.000+02:00"
    assert sas_instant(second, PARIS) == "2026-10-25T02:30:00.000+01:00"
    assert sas_instant(first, PARIS) == "2026-10-25T02:30:00.000+02:00"  # from the cache


@given(st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2090, 1, 1)))
def test_sas_instant_is_strftimes(moment: datetime) -> None:
    aware = moment.replace(tzinfo=UTC)
    local = aware.astimezone(PARIS)
    offset = local.utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    expected = (
        f"{local:%Y-%m-%dT%H:%M:%S}.000{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    )
    assert sas_instant(aware, PARIS) == expected


def test_offsets_without_colon_are_still_read() -> None:
    assert parse_datetime("2026-06-12T08:00:00+0200").utcoffset() == timedelta(hours=2)
    assert parse_datetime("2026-06-12T08:00:00-0130").utcoffset() == -timedelta(minutes=90)
    assert parse_datetime("2026-06-12T08:00:00Z").utcoffset() == timedelta(0)


def test_the_booking_query_is_urlencodes() -> None:
    start = datetime(2026, 6, 12, 8, tzinfo=PARIS)
    for key in ("a-1", "a b/é?&=", "x" * 80):
        out = sas.slot("v", "s", key, start, start + timedelta(minutes=15), PARIS,
                       booking_url="https://rdv.example.org/book?x=1")  # fmt: skip
        assert out["comment"] == "https://rdv.example.org/book?x=1&" + urlencode(
            {"slot": out["id"]}
        )


def test_localise_keeps_its_notes_though_cached() -> None:
    for _ in range(2):  # the second time from the cache
        gap, note = localise(datetime(2026, 3, 29, 2, 30), PARIS)
        assert gap.isoformat() == "2026-03-29T03:30:00+02:00" and note and "does not exist" in note
        twice, note = localise(datetime(2026, 10, 25, 2, 30), PARIS)
        assert twice.utcoffset() == timedelta(hours=2) and note and "happens twice" in note
        plain, note = localise(datetime(2026, 6, 12, 8, 0), PARIS)
        assert plain.isoformat() == "2026-06-12T08:00:00+02:00" and note is None
