"""What the vendor mappers share: reading loosely typed records, RPPS lookup, Paris times,
gathering one practitioner's resources and slots into its feed, rejecting the feeds an
error names, and the default window.

Private (``_``): the registry does not take it for a format. A bad record of a known
practitioner rejects that practitioner's feed (a feed is a snapshot: storing it without the
bad slot would remove that slot); a record whose practitioner cannot be told is an error of
its own, and the other practitioners still map.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from mappings import sas
from mappings.contract import FhirJson, Issue, MappingOptions, MappingResult, PractitionerFeed
from mappings.localtime import TimeProblem, aware


def text_key(value: object) -> str | None:
    """A vendor key: a non-empty string or an integer (never a bool), as text."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip() and len(value) <= 200:
        return value.strip()
    return None


def obj(value: object) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def items(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def label(value: object) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def minutes(value: object) -> timedelta | None:
    """A positive duration in minutes (at most a day), else None."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 1440:
        return None
    return timedelta(minutes=value)


class FeedBuilder:
    """Collects one input's feeds into ``result``."""

    def __init__(self, vendor: str, options: MappingOptions, result: MappingResult) -> None:
        self.vendor = options.vendor or vendor
        self.options = options
        self.result = result
        self._defaulted = False
        self._schedules: dict[tuple[str, str], str] = {}
        self._starts: dict[str, list[datetime]] = {}  # each feed's slot starts, in order
        # the motive's key when the input is one motive's request: its Schedules are that
        # motive's, so its snapshot never removes another motive's slots
        self.motive: str | None = None

    def where(self, pointer: str) -> str:
        """``source#pointer``; the whole document is ``source`` alone."""
        return f"{self.options.source}#{pointer}" if pointer else self.options.source

    def keyed(
        self, raw: object, key_field: str, what: str, pointer: str
    ) -> tuple[dict[str, Any], str] | None:
        """A record of the document and its practitioner key (``raw[key_field]``), or None
        with the problem reported: ``what`` names the record ("a slot")."""
        record = obj(raw)
        if record is None:
            self.error("structure", f"{what} is not a JSON object", pointer)
            return None
        key = text_key(record.get(key_field))
        if key is None:
            self.error("required", f"{what} without {key_field}", pointer)
            return None
        return record, key

    def reject(self, key: str, code: str, message: str, pointer: str) -> None:
        """An error that rejects the whole feed of practitioner ``key``."""
        if not any(feed.key == key for feed in self.result.feeds):
            self.result.feed(key, None)
        self.result.error(code, message, self.where(pointer), practitioner=key)

    def practitioner(
        self,
        key: str,
        pointer: str,
        *,
        rpps: object = None,
        family: str | None = None,
        given: str | None = None,
    ) -> PractitionerFeed:
        """The feed of ``key``: its RPPS is ``rpps`` when the format carries it, else the
        options' table; without one the feed is rejected (never invented)."""
        for feed in self.result.feeds:
            if feed.key == key:
                return feed
        carried = rpps if isinstance(rpps, str) and sas.RPPS.fullmatch(rpps) else None
        if rpps is not None and carried is None:
            self.result.warning(
                "value", f"{rpps!r:.40} is not an 11-digit RPPS", self.where(pointer), key
            )
        found = carried or self.options.rpps_table.get(key)
        feed = self.result.feed(key, found)
        if found is None or not sas.RPPS.fullmatch(found):
            feed.rpps = None
            self.result.error(
                "not-found",
                f"practitioner {key!r} has no RPPS (not in the format, not in the RPPS table)",
                self.where(pointer),
                practitioner=key,
            )
            return feed
        feed.resources.append(sas.practitioner(self.vendor, key, found, family, given))
        return feed

    def place(
        self,
        feed: PractitionerFeed,
        place_key: str,
        *,
        name: str | None = None,
        address: FhirJson | None = None,
        position: tuple[float, float] | None = None,
        phone: str | None = None,
        structure_id: str | None = None,
    ) -> str:
        """The Schedule id of ``feed``'s practitioner at ``place_key`` (role and schedule
        added on first use)."""
        schedule = self.known(feed, place_key)
        if schedule is not None:
            return schedule
        schedule = sas.schedule_id(self.vendor, feed.key, place_key, self.motive)
        self._schedules[feed.key, place_key] = schedule
        if feed.rejected:
            return schedule
        if address is None:
            self.result.warning(
                "incomplete",
                f"place {place_key!r} has no address (line, city, postal code): the SAS "
                "Location profile requires one",
                self.options.source,
                feed.key,
            )
        if position is not None and not (-90 <= position[0] <= 90 and -180 <= position[1] <= 180):
            position = None
        feed.resources.append(
            sas.practitioner_role(
                self.vendor,
                feed.key,
                place_key,
                place_name=name,
                address=address,
                position=position,
                structure_id=structure_id,
                phone=phone,
            )
        )
        feed.resources.append(
            sas.schedule(self.vendor, feed.key, place_key, motive_key=self.motive)
        )
        return schedule

    def known(self, feed: PractitionerFeed, place_key: str) -> str | None:
        """The Schedule id of ``feed`` at ``place_key`` when ``place`` already added it (so
        the place's details are read once per input, not once per slot)."""
        return self._schedules.get((feed.key, place_key))

    def instant(self, value: object, pointer: str, key: str | None) -> datetime | None:
        """A vendor time as an aware datetime; a bad one is an error (rejecting ``key``'s
        feed), a DST oddity a warning."""
        try:
            moment, note = _fast(value) or aware(value, self.options.timezone)
        except TimeProblem as problem:
            self._record_error("invalid", str(problem), pointer, key)
            return None
        if not 1970 <= moment.year <= 2100:
            # an agenda slot in another century is a mistake (and far dates overflow)
            self._record_error("value", f"{value!r:.40} is out of range", pointer, key)
            return None
        if note:
            self.result.warning("value", note, self.where(pointer), key)
        return moment

    def end(
        self,
        start: datetime,
        end: datetime | None,
        duration: timedelta | None,
        pointer: str,
        key: str | None,
    ) -> datetime | None:
        """The slot's end: as sent, else start + the motive's duration, else start + the
        default duration (one warning per input). An end not after its start is an error."""
        if end is None:
            if duration is None:
                duration = self.options.default_duration
                if not self._defaulted:
                    self._defaulted = True
                    self.result.warning(
                        "incomplete",
                        f"slots without an end or a known motive duration last "
                        f"{int(duration.total_seconds() // 60)} min (the default duration)",
                        self.where(pointer),
                    )
            return start + duration
        if end <= start:
            self._record_error("value", "the slot ends before it starts", pointer, key)
            return None
        return end

    def slot(
        self,
        feed: PractitionerFeed,
        schedule: str,
        slot_key: str,
        start: datetime,
        end: datetime,
        *,
        consultation: str = "AMB",
        motive: str | None = None,
    ) -> None:
        if feed.rejected:
            return
        self._starts.setdefault(feed.key, []).append(start)
        feed.slots.append(
            sas.slot(
                self.vendor,
                schedule,
                slot_key,
                start,
                end,
                self.options.timezone,
                consultation=(consultation,),
                motive=motive,
                booking_url=self.options.booking_url,
            )
        )

    def reject_all(self, code: str, message: str, pointer: str) -> None:
        """An error of the whole input: no feed of it is stored."""
        self.result.error(code, message, self.where(pointer))
        for feed in self.result.feeds:
            feed.rejected = True

    def info(self, message: str, pointer: str) -> None:
        self.result.issues.append(
            Issue("information", "informational", message, self.where(pointer))
        )

    def error(self, code: str, message: str, pointer: str, key: str | None = None) -> None:
        self._record_error(code, message, pointer, key)

    def _record_error(self, code: str, message: str, pointer: str, key: str | None) -> None:
        if key is None:
            self.result.error(code, message, self.where(pointer))
        else:
            self.reject(key, code, message, pointer)

    # windows
    def default_window(self) -> tuple[datetime, datetime]:
        """[now, now + window_days): for documents that do not say which period they cover."""
        now = self.options.now or datetime.now(UTC)
        return now, now + timedelta(days=self.options.window_days)

    def day_window(self, first: date, last: date) -> tuple[datetime, datetime]:
        """From local midnight of ``first`` to local midnight after ``last``."""
        zone = self.options.timezone
        return (
            datetime.combine(first, time(), zone),
            datetime.combine(last + timedelta(days=1), time(), zone),
        )

    def finish(self, window: tuple[datetime, datetime] | None) -> MappingResult:
        """Every feed gets ``window`` (the default one when None); a slot outside it is
        reported and left out (reconciling it would be outside the snapshot)."""
        span = window or self.default_window()
        for feed in self.result.feeds:
            feed.window = span
            if feed.rejected:
                continue
            starts = self._starts.get(feed.key, [])
            inside = [s for s, t in zip(feed.slots, starts, strict=True) if span[0] <= t < span[1]]
            if len(inside) < len(feed.slots):
                self.result.warning(
                    "value",
                    f"{len(feed.slots) - len(inside)} slot(s) start outside the feed's window "
                    f"[{span[0].isoformat()}, {span[1].isoformat()}): left out",
                    self.options.source,
                    feed.key,
                )
            feed.slots = inside
        return self.result


def day(value: object) -> date | None:
    """A ``YYYY-MM-DD`` day, else None."""
    if not isinstance(value, str) or len(value) != 10:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def _fast(value: object) -> tuple[datetime, None] | None:
    """The common case read directly: an ISO date-time with its offset (``Z``, ``+02:00``,
    ``+0200``); anything else goes the careful way (``localtime.aware``)."""
    if isinstance(value, str) and 19 <= len(value) <= 40:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return None
        return (moment, None) if moment.tzinfo is not None else None
    return None


def instant_key(moment: datetime) -> str:
    """A slot key part for vendors without slot ids: the start in UTC, offset-independent."""
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


_VIDEO = ("video", "vidéo", "visio", "teleconsult", "téléconsult", "remote", "online")
_HOME = ("domicile", "home", "athome")


def consultation(*hints: object) -> str:
    """AMB (in office) unless a vendor's type or motive says video (VR) or home visit (HH)."""
    for hint in hints:
        text = hint.lower().replace("-", "").replace("_", "") if isinstance(hint, str) else ""
        if any(word in text for word in _VIDEO):
            return "VR"
        if any(word in text for word in _HOME):
            return "HH"
    return "AMB"


_POSTAL_CITY = re.compile(r"\b(\d{5})\b[ ,]*([^,\d][^,]*)")


def fhir_address(
    street: str | None, city: str | None, postal_code: str | None, text: str | None = None
) -> FhirJson | None:
    """A FHIR address as the SAS Location profile wants it (line, city and postal code, all
    three), None when they cannot be told. What is missing is read from the text
    (``"1 rue X, 35000 Rennes"``: what comes before ``NNNNN City`` is the line)."""
    found = _POSTAL_CITY.search(text) if text else None
    if found is not None:
        postal_code = postal_code or found.group(1)
        city = city or found.group(2).strip()
    before = text[: found.start()].strip(" ,") if text and found is not None else ""
    line = street or before or (text.split(",")[0].strip() if text and "," in text else None)
    if not (line and city and postal_code):
        return None
    out: FhirJson = {"text": text} if text else {}
    out.update({"line": [line], "city": city, "postalCode": postal_code})
    return out


def reject_named(result: MappingResult) -> None:
    """Reject every feed an error names, wherever in the input the error was found: a
    snapshot missing a bad record would remove that record's slot."""
    named = {i.practitioner for i in result.issues if i.severity == "error"}
    for feed in result.feeds:
        if feed.key in named:
            feed.rejected = True


def default_window(options: MappingOptions) -> tuple[datetime, datetime]:
    """The window of a feed whose payload does not say which period it covers."""
    now = options.now or datetime.now(UTC)
    return now, now + timedelta(days=options.window_days)
