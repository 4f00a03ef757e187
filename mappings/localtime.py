"""Vendor times to aware datetimes, and aware datetimes to the SAS instant form.

Vendors send UTC (``Z``), offsets with or without a colon (``+02:00``, ``+0200``), or naive
local times (Mapharma, Valwin, HL7 v2). Naive times are Paris local times through
``zoneinfo`` (never a fixed offset): a time in the March gap does not exist (it is moved
forward by the gap and reported), a time in the October repeated hour is ambiguous (the
first occurrence, ``fold=0``, is taken and reported).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

_OFFSET_NO_COLON = re.compile(r"([+-]\d{2})(\d{2})$")


class TimeProblem(ValueError):
    """A time that cannot be read at all."""


def parse_datetime(text: object) -> datetime:
    """An ISO 8601 date-time as sent by a vendor: aware when it has ``Z`` or an offset, naive
    otherwise (``localise`` it). ``TimeProblem`` when it is not one."""
    if not isinstance(text, str) or not 10 <= len(text) <= 40:
        raise TimeProblem(f"not a date-time: {text!r:.60}")
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    if value[-5:-4] in ("+", "-") and value[-4:].isdigit():  # else the pattern cannot match
        value = _OFFSET_NO_COLON.sub(r"\1:\2", value)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise TimeProblem(f"not a date-time: {text!r:.60}") from None
    return parsed


def localise(naive: datetime, zone: ZoneInfo) -> tuple[datetime, str | None]:
    """``naive`` as a wall-clock time of ``zone``; the second value says what was odd about
    it (a time that does not exist, or one that happens twice), None when nothing."""
    if naive.tzinfo is not None:
        return naive, None
    return _localise(naive, naive.fold, zone)


# A slot's end is usually the next one's start: half the calls are repeats. ``fold`` is in
# the key because naive datetimes compare by wall time alone (as ``_sas_instant``'s).
@lru_cache(maxsize=4096)
def _localise(naive: datetime, fold: int, zone: ZoneInfo) -> tuple[datetime, str | None]:
    first = naive.replace(tzinfo=zone, fold=0)
    second = naive.replace(tzinfo=zone, fold=1)
    if first.utcoffset() == second.utcoffset():
        return first, None
    # Round-trip through UTC tells a gap (the time does not exist) from a fold (twice).
    if first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != naive:
        # In the gap: fold=0 reads it with the offset before the change, so it lands after
        # the gap once normalised (02:30 -> 03:30 on the last Sunday of March)
        moved = first.astimezone(UTC).astimezone(zone)
        return moved, (
            f"{naive:%Y-%m-%d %H:%M} does not exist in {zone.key} (clocks go forward): "
            f"taken as {moved:%H:%M}"
        )
    return first, (
        f"{naive:%Y-%m-%d %H:%M} happens twice in {zone.key} (clocks go back): "
        "the first one is taken"
    )


def aware(text: object, zone: ZoneInfo) -> tuple[datetime, str | None]:
    """``parse_datetime`` then ``localise`` when naive."""
    return localise(parse_datetime(text), zone)


def sas_instant(moment: datetime, zone: ZoneInfo) -> str:
    """``YYYY-MM-DDTHH:MM:SS.000+HH:MM`` in ``zone``'s local time, the form the SAS test kit
    requires."""
    if moment.tzinfo is None:
        raise ValueError("a naive datetime has no instant")
    return _sas_instant(moment, moment.fold, zone)


# The text depends only on the instant and the zone; a slot's end is usually the next one's
# start, so half the calls are repeats. ``fold`` is in the key because two datetimes of one
# tzinfo compare by wall time alone: the October hour's two 02:30 would be one entry.
@lru_cache(maxsize=4096)
def _sas_instant(moment: datetime, fold: int, zone: ZoneInfo) -> str:
    local = moment.astimezone(zone)
    offset = local.utcoffset() or timedelta(0)
    if not offset.seconds % 60 and not offset.microseconds:
        # the same text, several times faster than strftime (a hot path of every mapper)
        return local.replace(microsecond=0).isoformat(timespec="milliseconds")
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    hours, rest = divmod(abs(minutes), 60)
    return f"{local:%Y-%m-%dT%H:%M:%S}.000{sign}{hours:02d}:{rest:02d}"
