"""iCalendar (RFC 5545, RFC 7953) → free and busy Slots, one snapshot per practitioner.

- ``VFREEBUSY``: each ``FREEBUSY`` period is one Slot, ``FBTYPE=FREE`` free, any BUSY type
  (the default) busy; the window is the component's DTSTART/DTEND.
- ``VAVAILABILITY``/``AVAILABLE`` and recurring ``VEVENT`` (RRULE/RDATE, their EXDATE and
  RECURRENCE-ID) are opening hours: expanded with ``recurring-ical-events`` over the feed
  window and cut into free Slots of ``options.default_duration``; a one-off ``VEVENT`` (not
  cancelled, not transparent) is an appointment: the Slots it overlaps are busy.
- Times: ``icalendar`` reads any VTIMEZONE (and bare TZIDs through zoneinfo); floating times
  are ``options.timezone``.
- The practitioner: an ATTENDEE or ORGANIZER ``urn:oid:1.2.250.1.71.4.2.1|8<RPPS>`` (IDNPS)
  or ``rpps:<RPPS>``; else ``options.rpps_table`` keyed on the ATTENDEE/ORGANIZER address (with
  or without ``mailto:``), the calendar's ``X-WR-CALNAME``, or the source name.

A component whose DTEND is before its DTSTART is an error at ``source:line`` (its BEGIN line)
and rejects that practitioner's feed; the others go on.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import icalendar
import recurring_ical_events

from mappings import registry, sas
from mappings.contract import MappingOptions, MappingResult
from mappings.localtime import localise

NAME = "ical"
_IDNPS = re.compile(r"urn:oid:1\.2\.250\.1\.71\.4\.2\.1\|8(\d{11})", re.IGNORECASE)
_RPPS_URI = re.compile(r"rpps:(\d{11})", re.IGNORECASE)
_PLACE = "agenda"  # a calendar is one agenda: one place, one Schedule
MAX_SLOTS = 100_000  # per input: a longer expansion is refused (bounded work)


class IcalMapper:
    name = NAME
    description = "iCalendar VFREEBUSY, VAVAILABILITY and recurring VEVENT opening hours"

    def map(self, data: bytes, options: MappingOptions) -> MappingResult:
        result = MappingResult()
        where = options.source
        if len(data) > options.max_bytes:
            result.error(
                "too-costly",
                f"{len(data):,} bytes is more than the {options.max_bytes:,} a feed may have",
                where,
            )
            return result
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            result.error("invalid", f"not UTF-8 at byte {exc.start}: {exc.reason}", where)
            return result
        try:
            tops = icalendar.Component.from_ical(text, multiple=True)
        except Exception as exc:  # icalendar raises ValueError and others on broken text
            result.error("structure", f"not iCalendar: {str(exc)[:200]}", where)
            return result
        _Calendar(tops, _begin_lines(text), options, result).map()
        return result


def _begin_lines(text: str) -> list[int]:
    """The line number of every ``BEGIN:`` in order: the order ``Component.walk`` yields."""
    return [
        number
        for number, line in enumerate(text.splitlines(), start=1)
        if line[:6].upper() == "BEGIN:"
    ]


class _Calendar:
    def __init__(
        self,
        tops: list[Any],
        begins: list[int],
        options: MappingOptions,
        result: MappingResult,
    ) -> None:
        self.tops, self.options, self.result = tops, options, result
        self.vendor = options.vendor or NAME
        self.lines: dict[int, int] = {}
        walked = [c for top in tops for c in top.walk()]
        for component, line in zip(walked, begins, strict=False):
            self.lines[id(component)] = line
        self.slot_count = 0
        self.slot_ids: set[str] = set()  # two periods or openings giving the same slot: one

    def where(self, component: Any) -> str:
        line = self.lines.get(id(component))
        return f"{self.options.source}:{line}" if line else self.options.source

    def map(self) -> None:
        for top in self.tops:
            calname = str(top.get("X-WR-CALNAME", "")) or None
            for free_busy in top.walk("VFREEBUSY"):
                self.free_busy(free_busy, calname)
            for availability in top.walk("VAVAILABILITY"):
                self.opening_hours(availability, availability.walk("AVAILABLE"), calname)
            events = [e for e in top.walk("VEVENT")]
            if events:
                self.opening_hours(top, events, calname)

    # -- who

    def practitioner(self, component: Any, calname: str | None) -> tuple[str, str | None]:
        """(key, RPPS or None) of the agenda ``component`` belongs to."""
        addresses = [str(a) for a in _values(component.get("ATTENDEE"))]
        addresses += [str(a) for a in _values(component.get("ORGANIZER"))]
        for address in addresses:
            match = _IDNPS.fullmatch(address) or _RPPS_URI.fullmatch(address)
            if match:
                return match.group(1), match.group(1)
        table = self.options.rpps_table
        candidates = [*addresses, *(a.split(":", 1)[-1] for a in addresses)]
        candidates += [c for c in (calname, self.options.source) if c]
        for key in candidates:
            if key in table:
                return key, table[key]
        return (candidates[0] if candidates else self.options.source), None

    def feed_for(self, component: Any, calname: str | None) -> tuple[str, str] | None:
        key, rpps = self.practitioner(component, calname)
        feed = self.result.feed(key, rpps)
        if rpps is None or not sas.RPPS.fullmatch(rpps):
            self.result.error(
                "not-found",
                f"no RPPS for {key!r} (no rpps:/IDNPS attendee or organizer, not in the RPPS"
                " table)",
                self.where(component),
                practitioner=key,
            )
            return None
        if not feed.resources:
            feed.resources = [
                sas.practitioner(self.vendor, key, rpps, None, None),
                sas.practitioner_role(self.vendor, key, _PLACE, address=sas.unknown_address()),
                sas.schedule(self.vendor, key, _PLACE),
            ]
        return key, sas.schedule_id(self.vendor, key, _PLACE)

    # -- VFREEBUSY

    def free_busy(self, component: Any, calname: str | None) -> None:
        found = self.feed_for(component, calname)
        if self.broken(component, found):
            return
        start, end = (
            _time(component, "DTSTART", self.options),
            _time(component, "DTEND", self.options),
        )
        if start is not None and end is not None and end < start:
            return self.backwards(component, found)
        if found is None:
            return
        key, schedule = found
        feed = self.result.feed(key, None)
        window = (start, end) if start is not None and end is not None else self.window()
        _widen(feed, window)
        for prop in _values(component.get("FREEBUSY")):
            kind = str(getattr(prop, "params", {}).get("FBTYPE", "BUSY")).upper()
            for period in _periods(prop):
                begin, finish = (_aware(p, self.options) for p in period)
                if finish <= begin:
                    self.backwards(component, found)
                    return
                status = "free" if kind == "FREE" else "busy"
                self.add_slot(feed, schedule, key, begin, finish, status)

    # -- opening hours

    def opening_hours(self, owner: Any, components: list[Any], calname: str | None) -> None:
        if not components:
            return
        found = self.feed_for(owner if owner.name != "VCALENDAR" else components[0], calname)
        if owner.name != "VCALENDAR" and self.broken(owner, found):
            return
        good = []
        for component in components:
            if self.broken(component, found):
                continue
            start = _time(component, "DTSTART", self.options)
            end = _time(component, "DTEND", self.options)
            if start is not None and end is not None and end < start:
                self.backwards(component, found)
            elif start is not None:
                good.append(component)
        if found is None:
            return
        key, schedule = found
        feed = self.result.feed(key, None)
        window = self.window()
        limit = (_time(owner, "DTSTART", self.options), _time(owner, "DTEND", self.options))
        _widen(feed, window)
        calendar = icalendar.Calendar()
        busy: list[tuple[datetime, datetime]] = []
        for component in good:
            recurring = any(p in component for p in ("RRULE", "RDATE", "RECURRENCE-ID"))
            if component.name == "VEVENT" and not recurring:
                if _is_busy(component):
                    busy.extend(self.occurrences_of([component], window, key))
                continue
            if component.name == "VEVENT":
                calendar.add_component(component)
                continue
            event = icalendar.Event()  # AVAILABLE recurs as a VEVENT does (RFC 7953)
            for name, value in component.items():
                event[name] = value
            calendar.add_component(event)
        opening = self.occurrences_of(calendar.subcomponents, window, key)
        for begin, finish in opening:
            lo = max(begin, window[0], *(t for t in limit[:1] if t is not None))
            hi = min(finish, window[1], *(t for t in limit[1:] if t is not None))
            for slot_start, slot_end in _cut(lo, hi, self.options.default_duration):
                taken = any(b < slot_end and slot_start < e for b, e in busy)
                self.add_slot(
                    feed, schedule, key, slot_start, slot_end, "busy" if taken else "free"
                )
                if self.slot_count > MAX_SLOTS:
                    return

    def occurrences_of(
        self, components: list[Any], window: tuple[datetime, datetime], key: str
    ) -> list[tuple[datetime, datetime]]:
        calendar = icalendar.Calendar()
        for component in components:
            calendar.add_component(component)
        out: list[tuple[datetime, datetime]] = []
        try:
            query = recurring_ical_events.of(calendar, skip_bad_series=True)
            # after() is lazy and in start order: stop at the window's end or the bound, so a
            # FREQ=SECONDLY rule costs no more than MAX_SLOTS occurrences
            for occurrence in query.after(window[0]):
                start = _time(occurrence, "DTSTART", self.options)
                end = _time(occurrence, "DTEND", self.options)
                if start is None or start >= window[1] or len(out) > MAX_SLOTS:
                    break
                if end is not None and end > start:
                    out.append((start, end))
        except Exception as exc:  # the library's errors on rules it cannot expand
            self.result.error(
                "value",
                f"recurrence not expandable: {str(exc)[:200]}",
                self.options.source,
                practitioner=key,
            )
        return out

    # -- shared

    def window(self) -> tuple[datetime, datetime]:
        now = self.options.now or datetime.now(UTC)
        return now, now + timedelta(days=self.options.window_days)

    def broken(self, component: Any, found: tuple[str, str] | None) -> bool:
        """Report the properties icalendar could not read; True when there were some."""
        errors = getattr(component, "errors", None) or []
        for name, message in errors[:5]:
            self.result.error(
                "structure",
                f"{component.name}: {name} unreadable: {str(message)[:200]}",
                self.where(component),
                practitioner=found[0] if found else None,
            )
        return bool(errors)

    def backwards(self, component: Any, found: tuple[str, str] | None) -> None:
        self.result.error(
            "value",
            f"{component.name} ends (DTEND) before it starts (DTSTART): skipped",
            self.where(component),
            practitioner=found[0] if found else None,
        )

    def add_slot(
        self,
        feed: Any,
        schedule: str,
        key: str,
        start: datetime,
        end: datetime,
        status: str,
    ) -> None:
        self.slot_count += 1
        if self.slot_count == MAX_SLOTS + 1:
            self.result.error(
                "too-costly", f"more than {MAX_SLOTS:,} slots", self.options.source, key
            )
        if self.slot_count > MAX_SLOTS:
            return
        zone = self.options.timezone
        slot_key = (
            f"{key}-{start.astimezone(UTC):%Y%m%dT%H%M%SZ}-{end.astimezone(UTC):%Y%m%dT%H%M%SZ}"
        )
        slot = sas.slot(
            self.vendor,
            schedule,
            slot_key,
            start,
            end,
            zone,
            status=status,
            booking_url=self.options.booking_url if status == "free" else None,
        )
        if slot["id"] in self.slot_ids:
            return
        self.slot_ids.add(slot["id"])
        if status != "free":  # FrSlotAgregateur fixes status to free: a busy one is base R4
            del slot["meta"]["profile"]
        feed.slots.append(slot)


def _dt(prop: Any) -> Any:
    """A property's value, None when absent or broken (icalendar keeps what it could not
    parse and raises on access; the component's ``errors`` say why, reported apart)."""
    try:
        return getattr(prop, "dt", None)
    except Exception:
        return None


def _values(prop: Any) -> list[Any]:
    if prop is None:
        return []
    return list(prop) if isinstance(prop, list) else [prop]


def _periods(prop: Any) -> Iterator[tuple[Any, Any]]:
    """(start, end) of each period of a FREEBUSY value (one or several periods)."""
    for item in _values(prop):
        value = _dt(item) if hasattr(type(item), "dt") else item
        if isinstance(value, tuple) and len(value) == 2:
            start, end = value
            yield start, (start + end if isinstance(end, timedelta) else end)


def _time(component: Any, name: str, options: MappingOptions) -> datetime | None:
    prop = component.get(name)
    if prop is None and name == "DTEND" and component.get("DURATION") is not None:
        start = _time(component, "DTSTART", options)
        duration = _dt(component.get("DURATION"))
        return start + duration if start and isinstance(duration, timedelta) else None
    value = _dt(prop)
    if isinstance(value, date):
        return _aware(value, options)
    return None


def _aware(value: Any, options: MappingOptions) -> datetime:
    """A date or date-time as an aware datetime: dates at local midnight, floating times
    in ``options.timezone``."""
    moment: datetime = (
        value if isinstance(value, datetime) else datetime(value.year, value.month, value.day)
    )
    if moment.tzinfo is None:
        moment, _ = localise(moment, options.timezone)
    return moment


def _is_busy(component: Any) -> bool:
    status = str(component.get("STATUS", "")).upper()
    transparent = str(component.get("TRANSP", "")).upper() == "TRANSPARENT"
    return status != "CANCELLED" and not transparent


def _cut(start: datetime, end: datetime, length: timedelta) -> Iterator[tuple[datetime, datetime]]:
    """[start, end) cut into whole slots of ``length`` (in elapsed time: right across DST)."""
    if length <= timedelta(0):
        return
    begin = start.astimezone(UTC)
    finish = end.astimezone(UTC)
    while begin + length <= finish:
        yield begin, begin + length
        begin += length


def _widen(feed: Any, window: tuple[datetime, datetime]) -> None:
    if feed.window is None:
        feed.window = window
    else:
        feed.window = (min(feed.window[0], window[0]), max(feed.window[1], window[1]))


MAPPER = registry.register(IcalMapper())
