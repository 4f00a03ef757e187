"""Slot and Appointment times in the form the SAS test kit requires of search answers.

The kit wants ``YYYY-MM-DDTHH:MM:SS.mmm+HH:MM``. Stored resources keep the instant as the
client sent it (``2024-06-12T14:20:00Z`` is a valid instant); when a Slot or Appointment in a
search answer has another form, its ``start``/``end`` are rewritten as the same instant in the
server's zone (Europe/Paris). Resources already in that form are served as stored bytes.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from fhir_server.core import fhirtime

TIMED_TYPES = frozenset({"Slot", "Appointment"})
_KEYS = (b'"start":"', b'"end":"')
_CANONICAL = re.compile(rb"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}[+-]\d{2}:\d{2}$")


def needs_rewrite(content: bytes, tz: ZoneInfo) -> bool:
    """Some ``start``/``end`` in the (compact, as the server stores it) JSON is not in the
    kit's form. ``bytes.find`` rather than a regex: this runs on every Slot of an answer."""
    for key in _KEYS:
        at = content.find(key)
        while at != -1:
            value_at = at + len(key)
            end = content.find(b'"', value_at)
            if end == -1 or not _in_form(content[value_at:end], tz):
                return True
            at = content.find(key, end)
    return False


@lru_cache(maxsize=16384)
def _in_form(value: bytes, tz: ZoneInfo) -> bool:
    """``value`` has the kit's form and the zone's offset at that moment. Cached: a search
    answer repeats the same few hundred slot boundaries (agendas share a 5-15 min grid)."""
    if not _CANONICAL.match(value):
        return False
    text = value.decode()
    return fhirtime.format_instant(fhirtime.parse_instant(text), tz)[-6:] == text[-6:]


def rewrite(resource: dict[str, Any], tz: ZoneInfo) -> dict[str, Any]:
    out = dict(resource)
    for key in ("start", "end"):
        value = out.get(key)
        if isinstance(value, str):
            try:
                out[key] = fhirtime.format_instant(fhirtime.parse_instant(value), tz)
            except fhirtime.DateValueError:
                continue
    return out


class Remembered:
    """Which stored versions need their times rewritten, by (pk, version): those bytes
    never change, and a SAS search answers the same hot slots again and again. One per
    context (pks are only unique within one database); bounded."""

    def __init__(self, limit: int = 200_000) -> None:  # ~25 MB at most
        self.limit = limit
        self._known: dict[tuple[int, int], bool] = {}

    def needs_rewrite(self, key: tuple[int, int], content: bytes, tz: ZoneInfo) -> bool:
        known = self._known.get(key)
        if known is None:
            if len(self._known) >= self.limit:
                self._known.clear()  # crude but bounded; refilled from the hot slots
            known = self._known[key] = needs_rewrite(content, tz)
        return known


def normalised(
    content: bytes,
    res_type: str,
    tz: ZoneInfo,
    remembered: tuple[Remembered, tuple[int, int]] | None = None,
) -> dict[str, Any] | None:
    """The resource with rewritten times, or None when the stored bytes are already right."""
    if res_type not in TIMED_TYPES:
        return None
    if remembered is None:
        rewrite_needed = needs_rewrite(content, tz)
    else:
        memo, key = remembered
        rewrite_needed = memo.needs_rewrite(key, content, tz)
    return rewrite(orjson.loads(content), tz) if rewrite_needed else None
