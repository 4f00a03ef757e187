"""FHIR date/time values: parsing to UTC ranges, and the instant form we write.

FHIR dates have a precision (year, month, day, second...); a value stands for the whole
range it covers. We index and compare ranges ``[low, high)`` in UTC. A value without an
offset (allowed in queries, the SAS platform sends them) means the configured zone,
Europe/Paris by default, daylight-saving changes included.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

_DATETIME = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?P<f>\.\d+)?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?",
    re.ASCII,  # only 0-9 are digits; matched with fullmatch so "2024\n" is rejected
)

# The R4 regexes (StructureDefinition-*.json, extension "regex").
DATE_RE = re.compile(
    r"^([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)"
    r"(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1]))?)?$"
)
DATETIME_RE = re.compile(
    r"^([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])"
    r"(T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00)))?)?)?$"
)
INSTANT_RE = re.compile(
    r"^([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)-(0[1-9]|1[0-2])-(0[1-9]|[1-2][0-9]|3[0-1])"
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))$"
)
TIME_RE = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?$")

PARIS = ZoneInfo("Europe/Paris")


class DateValueError(ValueError):
    """A value that is not a FHIR date, dateTime or instant."""


def _add_months(d: datetime, months: int) -> datetime:
    total = d.year * 12 + (d.month - 1) + months
    return d.replace(year=total // 12, month=total % 12 + 1)


def parse_range(value: str, default_tz: ZoneInfo = PARIS) -> tuple[datetime, datetime]:
    """Return the UTC range ``[low, high)`` a FHIR date/dateTime/instant stands for."""
    match = _DATETIME.fullmatch(value)
    if not match:
        raise DateValueError(f"not a FHIR date/dateTime: {value!r}")
    g = match.groupdict()
    tz = _zone(g["tz"], default_tz)
    try:
        if g["m"] is None:
            low = datetime(int(g["y"]), 1, 1)
            high = low.replace(year=low.year + 1)
        elif g["d"] is None:
            low = datetime(int(g["y"]), int(g["m"]), 1)
            high = _add_months(low, 1)
        elif g["H"] is None:
            low = datetime(int(g["y"]), int(g["m"]), int(g["d"]))
            high = low + timedelta(days=1)
        else:
            second = int(g["S"] or 0)
            micro = int((g["f"] or ".0")[1:7].ljust(6, "0"))
            low = datetime(
                int(g["y"]), int(g["m"]), int(g["d"]), int(g["H"]), int(g["M"]), min(second, 59)
            ).replace(microsecond=micro)
            if g["S"] is None:
                step = timedelta(minutes=1)
            elif g["f"]:
                step = timedelta(microseconds=max(1, 10 ** (6 - min(len(g["f"]) - 1, 6))))
            else:
                step = timedelta(seconds=1)
            high = low + step
        return _to_utc(low, tz), _to_utc(high, tz)
    except (ValueError, OverflowError) as exc:  # e.g. 2024-02-30, or 9999-12-31 + 1 day
        raise DateValueError(f"not a valid date: {value!r} ({exc})") from exc


def _zone(tz: str | None, default_tz: ZoneInfo) -> ZoneInfo | timedelta:
    if tz is None:
        return default_tz
    if tz == "Z":
        return timedelta(0)
    sign = 1 if tz[0] == "+" else -1
    return sign * timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6]))


def _to_utc(naive: datetime, tz: ZoneInfo | timedelta) -> datetime:
    if isinstance(tz, timedelta):
        return (naive - tz).replace(tzinfo=UTC)
    # fold=0 takes the first of a repeated October hour; a March gap time is shifted
    # forward by zoneinfo, which is what a person means by "02:30" on that day.
    return naive.replace(tzinfo=tz).astimezone(UTC)


def format_instant(moment: datetime, tz: ZoneInfo = PARIS) -> str:
    """``YYYY-MM-DDTHH:MM:SS.mmm+HH:MM`` in the given zone (the SAS test kit's form)."""
    local = moment.astimezone(tz)
    millis = local.microsecond // 1000
    offset = local.strftime("%z")
    return f"{local:%Y-%m-%dT%H:%M:%S}.{millis:03d}{offset[:3]}:{offset[3:]}"


def utcnow() -> datetime:
    return datetime.now(UTC)


def parse_instant(value: str) -> datetime:
    """An instant (offset required) as an aware UTC datetime."""
    if not INSTANT_RE.match(value):
        raise DateValueError(f"not a FHIR instant: {value!r}")
    return parse_range(value)[0]


def is_date(value: str) -> bool:
    if not DATE_RE.match(value):
        return False
    try:
        parse_range(value)
    except DateValueError:
        return False
    return True


def is_datetime(value: str) -> bool:
    if not DATETIME_RE.match(value):
        return False
    try:
        parse_range(value)
    except DateValueError:
        return False
    return True


def is_instant(value: str) -> bool:
    return is_datetime(value) and bool(INSTANT_RE.match(value))


__all__ = [
    "PARIS",
    "DateValueError",
    "date",
    "format_instant",
    "is_date",
    "is_datetime",
    "is_instant",
    "parse_instant",
    "parse_range",
    "utcnow",
]
