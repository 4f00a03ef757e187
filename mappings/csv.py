"""The manual-entry template for doctors without agenda software (and what the manual-entry
form produces): one CSV line per slot.

Columns (header required, any order, names case-insensitive)::

    rpps;place;address;postal_code;city;date;start;end;duration;consultation;slot_type

``address``, ``postal_code`` and ``city`` are required (the SAS place needs them); ``end``
(HH:MM) or ``duration`` (minutes) is required; ``consultation`` is AMB, HH or VR
(several joined by ``|``, default AMB); ``slot_type`` PUBLIC, PRO or SNP (``|`` too,
default PUBLIC). UTF-8 (a BOM is fine), ``;`` or ``,`` separated (sniffed from the header).
Times are Paris wall-clock times: a start in the March gap moves forward, one in the
October repeated hour is the first; both are reported.

A bad line is reported as ``file:LINE`` with its column, and the other lines go on; the bad
line's practitioner (when its RPPS is readable) has its feed rejected, since a snapshot
without that line would remove the slot it meant to offer. Each practitioner's feed covers
the whole days from its first date to its last.
"""

from __future__ import annotations

import csv as _csv
import io
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from mappings import registry, sas
from mappings._feeds import reject_named
from mappings.contract import MappingOptions, MappingResult
from mappings.localtime import localise

REQUIRED = ("rpps", "place", "address", "postal_code", "city", "date", "start")
OPTIONAL = ("end", "duration", "consultation", "slot_type")
_HHMM = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_POSTAL = re.compile(r"\d[0-9AB]\d{3}")  # Corsica: 2A/2B
MAX_DURATION = 24 * 60


@dataclass(slots=True)
class _Line:
    at: str  # file:LINE
    rpps: str
    place: str
    address: str
    postal_code: str
    city: str
    day: date
    start: datetime
    end: datetime
    consultation: tuple[str, ...]
    slot_types: tuple[str, ...]


class _Bad(ValueError):
    def __init__(self, column: str, message: str) -> None:
        super().__init__(f"{column}: {message}")
        self.column = column


@dataclass
class CsvMapper:
    name: str = "csv"
    description: str = "manual-entry CSV template (one slot per line; see docs/mappings.md)"

    def map(self, data: bytes, options: MappingOptions) -> MappingResult:
        result = MappingResult()
        where = options.source
        if len(data) > options.max_bytes:
            result.error("too-costly", f"{len(data):,} bytes is too large", where)
            return result
        try:
            content = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            result.error(
                "invalid", f"not UTF-8 at byte {exc.start}: {exc.reason}", f"{where}:{line}"
            )
            return result
        lines = _read(content, options, result)
        _feeds(lines, options.vendor or self.name, options, result)
        reject_named(result)
        return result


def _read(content: str, options: MappingOptions, result: MappingResult) -> list[_Line]:
    where = options.source
    header_text = content.split("\n", 1)[0]
    delimiter = ";" if header_text.count(";") >= header_text.count(",") else ","
    # newline="": the csv module then reads quoted line breaks and counts lines itself
    reader = _csv.reader(io.StringIO(content, newline=""), delimiter=delimiter, strict=True)
    lines: list[_Line] = []
    try:
        header = next(reader, None)
        if header is None:
            result.error("required", "empty file: the header line is required", f"{where}:1")
            return lines
        columns = [c.strip().lower() for c in header]
        missing = [c for c in REQUIRED if c not in columns]
        if "end" not in columns and "duration" not in columns:
            missing.append("end or duration")
        if missing:
            result.error("required", f"header lacks column(s): {', '.join(missing)}", f"{where}:1")
            return lines
        for unknown in sorted(set(columns) - set(REQUIRED) - set(OPTIONAL)):
            result.warning("informational", f"column {unknown!r} is ignored", f"{where}:1")
        for row in reader:
            number = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            values = dict(zip(columns, (cell.strip() for cell in row), strict=False))
            rpps = values.get("rpps", "")
            owner = rpps if sas.RPPS.fullmatch(rpps) else None
            if len(row) != len(columns):
                result.error(
                    "structure",
                    f"{len(row)} cells where the header has {len(columns)}",
                    f"{where}:{number}",
                    owner,
                )
                continue
            try:
                lines.append(_line(values, options, result, f"{where}:{number}"))
            except _Bad as bad:
                result.error("value", str(bad), f"{where}:{number}", owner)
    except _csv.Error as exc:
        # a broken quote cannot be resynchronised: what follows is not read
        result.error("structure", f"not CSV: {exc}", f"{where}:{reader.line_num}")
    return lines


def _line(values: dict[str, str], options: MappingOptions, result: MappingResult, at: str) -> _Line:
    rpps = values["rpps"]
    if not sas.RPPS.fullmatch(rpps):
        raise _Bad("rpps", f"not an 11-digit RPPS: {rpps!r:.20}")
    place = values["place"]
    if not place:
        raise _Bad("place", "empty")
    for column in ("address", "city"):
        if not values[column]:
            raise _Bad(column, "empty (the SAS shows where the consultation is)")
    postal = values["postal_code"]
    if not _POSTAL.fullmatch(postal):
        raise _Bad("postal_code", f"not a French postal code: {postal!r:.20}")
    try:  # fromisoformat alone would also take week dates such as 2026-W24-1
        day = date.fromisoformat(values["date"]) if _DATE.fullmatch(values["date"]) else None
    except ValueError:
        day = None
    if day is None:
        raise _Bad("date", f"not a YYYY-MM-DD date: {values['date']!r:.20}")
    start_clock = _clock(values["start"], "start")
    start, odd = localise(datetime.combine(day, start_clock), options.timezone)
    if odd:
        result.warning("value", f"start: {odd}", at, rpps)
    end_text, duration_text = values.get("end", ""), values.get("duration", "")
    if end_text:
        end, odd = localise(datetime.combine(day, _clock(end_text, "end")), options.timezone)
        if odd:
            result.warning("value", f"end: {odd}", at, rpps)
        if end <= start:
            raise _Bad("end", f"{end_text} is not after the start")
    elif duration_text:
        if not duration_text.isdigit() or not 0 < int(duration_text) <= MAX_DURATION:
            raise _Bad(
                "duration", f"not a number of minutes (1 to {MAX_DURATION}): {duration_text!r:.20}"
            )
        # in UTC: aware arithmetic in one zone is wall-clock, wrong across a DST change
        end = start.astimezone(UTC) + timedelta(minutes=int(duration_text))
    else:
        raise _Bad("end", "neither end nor duration is given")
    return _Line(
        at=at,
        rpps=rpps,
        place=place,
        address=values.get("address", ""),
        postal_code=postal,
        city=values.get("city", ""),
        day=day,
        start=start,
        end=end,
        consultation=_codes(
            values.get("consultation", ""), "consultation", sas.CONSULTATION_TYPES, "AMB"
        ),
        slot_types=_codes(
            values.get("slot_type", ""), "slot_type", ("PUBLIC", "PRO", "SNP"), "PUBLIC"
        ),
    )


def _clock(text: str, column: str) -> time:
    match = _HHMM.fullmatch(text)
    if match is None:
        raise _Bad(column, f"not an HH:MM time: {text!r:.20}")
    return time(int(match[1]), int(match[2]))


def _codes(text: str, column: str, allowed: tuple[str, ...], default: str) -> tuple[str, ...]:
    codes = tuple(dict.fromkeys(c.strip().upper() for c in text.split("|") if c.strip()))
    wrong = [c for c in codes if c not in allowed]
    if wrong:
        raise _Bad(column, f"{', '.join(wrong)[:40]} is not one of {'/'.join(allowed)}")
    return codes or (default,)


def _feeds(lines: list[_Line], vendor: str, options: MappingOptions, result: MappingResult) -> None:
    zone = options.timezone
    seen: set[str] = set()
    schedules: dict[tuple[str, str], str] = {}  # (rpps, place key) -> Schedule id
    for line in lines:
        place_key = f"{line.place}|{line.postal_code}"
        feed = result.feed(line.rpps, line.rpps)
        schedule = schedules.get((line.rpps, place_key))
        if schedule is None:
            if not feed.resources:
                feed.resources.append(sas.practitioner(vendor, line.rpps, line.rpps, None, None))
            address = {"line": [line.address], "city": line.city, "postalCode": line.postal_code}
            feed.resources.append(
                sas.practitioner_role(
                    vendor, line.rpps, place_key, place_name=line.place, address=address
                )
            )
            feed.resources.append(sas.schedule(vendor, line.rpps, place_key))
            schedule = schedules[line.rpps, place_key] = feed.resources[-1]["id"]
        first = datetime.combine(line.day, time(), zone)
        last = datetime.combine(line.day + timedelta(days=1), time(), zone)
        if feed.window is not None:
            first, last = min(first, feed.window[0]), max(last, feed.window[1])
        feed.window = (first, last)
        key = f"{line.rpps}|{place_key}|{line.start.astimezone(UTC).isoformat()}"
        if key in seen:
            result.warning(
                "duplicate", f"{line.start:%Y-%m-%d %H:%M} at {line.place} again", line.at
            )
            continue
        seen.add(key)
        feed.slots.append(
            sas.slot(
                vendor,
                schedule,
                key,
                line.start,
                line.end,
                zone,
                slot_types=line.slot_types,
                consultation=line.consultation,
                booking_url=options.booking_url,
            )
        )


MAPPER = registry.register(CsvMapper())
