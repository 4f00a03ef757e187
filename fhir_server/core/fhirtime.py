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

PARIS = ZoneInfo("Europe/Paris")
MIN_UTC = datetime.min.replace(tzinfo=UTC)
MAX_UTC = datetime.max.replace(tzinfo=UTC)


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
    y, m, d = int(g["y"]), int(g["m"] or 1), int(g["d"] or 1)
    try:
        if g["H"] is None:
            low = datetime(y, m, d)
        else:
            second = min(int(g["S"] or 0), 59)  # a leap second 60 counts as 59
            micro = int((g["f"] or ".0")[1:7].ljust(6, "0"))
            low = datetime(y, m, d, int(g["H"]), int(g["M"]), second, micro)
    except ValueError as exc:  # e.g. 2024-02-30
        raise DateValueError(f"not a valid date: {value!r} ({exc})") from exc
    try:
        high = _end_of(low, g)
    except (ValueError, OverflowError):  # the range runs past year 9999: open end
        return _to_utc(low, tz), MAX_UTC
    return _to_utc(low, tz), _to_utc(high, tz)


def _end_of(low: datetime, g: dict[str, str | None]) -> datetime:
    if g["m"] is None:
        return low.replace(year=low.year + 1)
    if g["d"] is None:
        return _add_months(low, 1)
    if g["H"] is None:
        return low + timedelta(days=1)
    if g["S"] is None:
        return low + timedelta(minutes=1)
    if g["f"]:
        return low + timedelta(microseconds=max(1, 10 ** (6 - min(len(g["f"]) - 1, 6))))
    return low + timedelta(seconds=1)


def _zone(tz: str | None, default_tz: ZoneInfo) -> ZoneInfo | timedelta:
    if tz is None:
        return default_tz
    if tz == "Z":
        return timedelta(0)
    sign = 1 if tz[0] == "+" else -1
    return sign * timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6]))


def _to_utc(naive: datetime, tz: ZoneInfo | timedelta) -> datetime:
    try:
        if isinstance(tz, timedelta):
            return (naive - tz).replace(tzinfo=UTC)
        # fold=0 takes the first of a repeated October hour; a March gap time is shifted
        # forward by zoneinfo, which is what a person means by "02:30" on that day.
        return naive.replace(tzinfo=tz).astimezone(UTC)
    except OverflowError:  # within hours of year 1 or year 9999: clamp
        return MIN_UTC if naive.year < 5000 else MAX_UTC


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


def _valid(pattern: re.Pattern[str], value: str) -> bool:
    """Matches the R4 regex and names a real calendar date (no 2024-02-30)."""
    if not pattern.match(value):
        return False
    try:
        parse_range(value)
    except DateValueError:
        return False
    return True


def is_date(value: str) -> bool:
    return _valid(DATE_RE, value)


def is_datetime(value: str) -> bool:
    return _valid(DATETIME_RE, value)


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
