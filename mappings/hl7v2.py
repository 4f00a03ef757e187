"""HL7 v2 SIU scheduling messages (v2.3 to 2.5.1) → Appointments and the Slots they take.

SIU is a stream of events, not a snapshot: every feed has ``window`` None (nothing is ever
removed by it). Per message: S12 book, S13 reschedule, S14 modify → the Slot is ``busy`` and
the Appointment ``booked``; S15 cancel, S17 delete → the Slot is ``free`` again and the
Appointment ``cancelled``; S26 no-show → ``noshow`` (its Slot stays busy). The Slot and the
Appointment are keyed by the appointment's own id (SCH-2 filler, else SCH-1 placer), so a
reschedule moves the same Slot and a cancel frees it.

The French ClicRDV variant carries the RPPS in SCH-16 and ``RPPS@FINESS`` in AIG-4. Times are
HL7 TS; naive ones are local times of ``options.timezone`` (Paris). Parsing is python-hl7's.
A message that cannot be read (a broken segment, no SCH, no start) is an error at
``source:line`` naming the message and segment; the other messages go on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import hl7

from mappings import registry, sas
from mappings.contract import FhirJson, MappingOptions, MappingResult
from mappings.localtime import localise, sas_instant

NAME = "hl7v2"
_EVENTS = {
    "S12": ("booked", "busy"),
    "S13": ("booked", "busy"),
    "S14": ("booked", "busy"),
    "S15": ("cancelled", "free"),
    "S17": ("cancelled", "free"),
    "S26": ("noshow", "busy"),
}
_READ = frozenset({"MSH", "SCH", "AIS", "AIG", "AIL", "AIP"})
_SEGMENT_ID = re.compile(r"[A-Z][A-Z0-9]{2}")
_TS = re.compile(
    r"(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})?(\d{2})?(?:\.\d{1,4})?(?:([+-])(\d{2})(\d{2}))?"
)
_DURATION = re.compile(r"([SMHD])?(\d{1,5})")
_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, "d": 86400}
_MLLP = re.compile(r"[\x0b\x1c]")


@dataclass(frozen=True, slots=True)
class _Line:
    number: int  # 1-based line of the input
    text: str


def split_messages(text: str) -> list[list[_Line]]:
    """The messages of ``text`` as their segment lines: MLLP frames or plain, ``\\r``,
    ``\\n`` or ``\\r\\n`` between segments, each message starting at an MSH."""
    messages: list[list[_Line]] = []
    clean = _MLLP.sub("\n", text).replace("\r\n", "\n").replace("\r", "\n")
    for number, raw in enumerate(clean.split("\n"), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("MSH") or not messages:
            messages.append([])
        messages[-1].append(_Line(number, line))
    return messages


class Hl7v2Mapper:
    name = NAME
    description = "HL7 v2 SIU S12/S13/S14/S15/S17/S26 (v2.3-2.5.1, ClicRDV variant)"

    def map(self, data: bytes, options: MappingOptions) -> MappingResult:
        result = MappingResult()
        if len(data) > options.max_bytes:
            result.error(
                "too-costly",
                f"{len(data):,} bytes is more than the {options.max_bytes:,} a feed may have",
                options.source,
            )
            return result
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            text = data.decode("latin-1")  # v2's default character set (MSH-18 8859/1)
            result.warning(
                "invalid",
                f"not UTF-8 at byte {exc.start}: read as ISO 8859-1",
                options.source,
            )
        for index, lines in enumerate(split_messages(text), start=1):
            _Message(index, lines, options, result).map()
        return result


class _Broken(ValueError):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


class _Message:
    def __init__(
        self, index: int, lines: list[_Line], options: MappingOptions, result: MappingResult
    ) -> None:
        self.index, self.lines, self.options, self.result = index, lines, options, result
        self.vendor = options.vendor or NAME
        self.components, self.repetitions = "^", "~"

    def where(self, line: int) -> str:
        return f"{self.options.source}:{line}"

    def map(self) -> None:
        try:
            self._map()
        except _Broken as broken:
            self.result.error(
                "structure", f"message {self.index}: {broken}", self.where(broken.line)
            )

    def _map(self) -> None:
        first = self.lines[0]
        if not first.text.startswith("MSH") or len(first.text) < 8:
            raise _Broken(first.number, "segment 1 is not an MSH header")
        separator = first.text[3]
        encoding = first.text[4:8]
        if separator.isalnum() or len(set(encoding + separator)) != 5:
            raise _Broken(first.number, "segment 1 (MSH): bad field separator or encoding")
        self.components, self.repetitions = encoding[0], encoding[1]
        for position, line in enumerate(self.lines, start=1):
            tag = line.text[:3]
            rest = line.text[3:4]
            if not _SEGMENT_ID.fullmatch(tag) or rest not in ("", separator):
                raise _Broken(line.number, f"segment {position} ({line.text[:8]!r}) is broken")
        try:
            # only the segments we read: PID, PV1, NTE (the patient) are never parsed
            wanted = (line.text for line in self.lines if line.text[:3] in _READ)
            message = hl7.parse("\r".join(wanted))
        except Exception as exc:  # the library's own errors on text it cannot read
            raise _Broken(first.number, f"unreadable: {exc}") from None
        self.message = message
        self.parsed: dict[str, Any] = {}
        for segment in message:
            self.parsed.setdefault(str(segment[0]), segment)
        self.segments = {
            line.text[:3]: line for line in reversed(self.lines) if line.text[:3] in _READ
        }
        kind = self.field("MSH", 9)
        trigger = self.component(kind, 2)
        if self.component(kind, 1) != "SIU" or trigger not in _EVENTS:
            self.result.warning(
                "not-supported",
                f"message {self.index}: {kind or 'no type'} is not a handled SIU event, skipped",
                self.where(first.number),
            )
            return
        version = self.component(self.field("MSH", 12), 1)
        if not version.startswith(("2.3", "2.4", "2.5")):
            self.result.warning(
                "not-supported",
                f"message {self.index}: version {version or 'none'} (2.3 to 2.5.1 known),"
                " read as 2.5.1",
                self.where(first.number),
            )
        if "SCH" not in self.segments:
            raise _Broken(first.number, "no SCH segment")
        self.event(trigger)

    # -- fields

    def field(self, tag: str, number: int) -> str:
        """Field ``number`` of the first ``tag`` segment, raw (components unsplit), '' when
        absent (python-hl7 counts MSH's separator as field 1, as the standard does)."""
        segment = self.parsed.get(tag)
        if segment is None:
            return ""
        return str(segment[number]) if number < len(segment) else ""

    def component(self, raw: str, number: int) -> str:
        first = raw.split(self.repetitions, 1)[0]
        parts = first.split(self.components)
        value = parts[number - 1] if len(parts) >= number else ""
        return str(self.message.unescape(value)).strip()

    def line_of(self, tag: str) -> int:
        line = self.segments.get(tag) or self.lines[0]
        return line.number

    # -- the event

    def event(self, trigger: str) -> None:
        appointment_status, slot_status = _EVENTS[trigger]
        filler, placer = self.field("SCH", 2), self.field("SCH", 1)
        id_kind = "filler" if self.component(filler, 1) else "placer"
        raw_key = filler if id_kind == "filler" else placer
        if not self.component(raw_key, 1):
            raise _Broken(self.line_of("SCH"), "SCH-1 and SCH-2 (appointment id) are empty")
        appointment_key = "-".join(
            p for p in (self.component(raw_key, 2), self.component(raw_key, 1)) if p
        )
        start, end = self.times()
        key, rpps, family, given, finess, place = self.practitioner()
        if rpps is None:
            rpps = self.options.rpps_table.get(key)
        feed = self.result.feed(key, rpps)
        if rpps is None or not sas.RPPS.fullmatch(rpps):
            self.result.error(
                "not-found",
                f"message {self.index}: practitioner {key!r} has no RPPS (not in the message,"
                " not in the RPPS table)",
                self.where(self.line_of("SCH")),
                practitioner=key,
            )
            return
        place_key = f"finess-{finess}" if finess else (place or "default")
        self._ensure(
            feed.resources,
            sas.practitioner(self.vendor, key, rpps, family, given),
            sas.practitioner_role(
                self.vendor,
                key,
                place_key,
                address=sas.unknown_address(),
                place_name=place,
                structure_id=f"1{finess}" if finess else None,
            ),
            sas.schedule(self.vendor, key, place_key),
        )
        zone = self.options.timezone
        slot = sas.slot(
            self.vendor,
            sas.schedule_id(self.vendor, key, place_key),
            f"appt-{appointment_key}",
            start,
            end,
            zone,
            status=slot_status,
            booking_url=self.options.booking_url if slot_status == "free" else None,
        )
        if slot_status != "free":  # FrSlotAgregateur fixes status to free: a busy one is base R4
            del slot["meta"]["profile"]
        feed.slots = [s for s in feed.slots if s["id"] != slot["id"]] + [slot]
        appointment = _appointment(
            self.vendor,
            appointment_key,
            id_kind=id_kind,
            id_value=self.component(raw_key, 1),
            status=appointment_status,
            start=sas_instant(start, zone),
            end=sas_instant(end, zone),
            slot_id=slot["id"],
            practitioner_id=sas.practitioner_id(self.vendor, key),
            rpps=rpps,
        )
        feed.resources = [r for r in feed.resources if r["id"] != appointment["id"]]
        feed.resources.append(appointment)

    @staticmethod
    def _ensure(resources: list[FhirJson], *wanted: FhirJson) -> None:
        known = {(r["resourceType"], r["id"]) for r in resources}
        resources.extend(r for r in wanted if (r["resourceType"], r["id"]) not in known)

    def practitioner(self) -> tuple[str, str | None, str | None, str | None, str | None, str]:
        """(key, RPPS or None, family, given, FINESS or None, place key) from AIP-3, AIG-4
        (``RPPS@FINESS``, ClicRDV), SCH-16, in that order."""
        finess = None
        aig4 = self.component(self.field("AIG", 4), 1)
        if "@" in aig4:
            aig_rpps, finess = (p.strip() for p in aig4.split("@", 1))
            finess = finess if re.fullmatch(r"\d{9}", finess) else None
        else:
            aig_rpps = ""
        place_field = self.field("AIL", 3)
        place = self.component(place_field, 1) or self.component(place_field, 4)
        for raw in (self.field("AIP", 3), self.field("SCH", 16)):
            key = self.component(raw, 1)
            if key:
                family, given = self.component(raw, 2) or None, self.component(raw, 3) or None
                return key, _rpps(key) or _rpps(aig_rpps), family, given, finess, place
        if aig_rpps:
            return aig_rpps, _rpps(aig_rpps), None, None, finess, place
        raise _Broken(self.line_of("SCH"), "no practitioner (AIP-3, AIG-4, SCH-16 are empty)")

    def times(self) -> tuple[datetime, datetime]:
        """Start and end: SCH-11 (TQ ``^^duration^start^end``), else AIS/AIP/AIL/AIG-6 with
        their duration; a missing end is start + SCH-9/10, else the default (reported)."""
        tq = self.field("SCH", 11)
        start_text, start_tag = self.component(tq, 4), "SCH"
        if not start_text:
            for tag in ("AIS", "AIP", "AIL", "AIG"):
                start_text, start_tag = self.component(self.field(tag, 6), 1), tag
                if start_text:
                    break
        if not start_text:
            raise _Broken(self.line_of("SCH"), "no start time (SCH-11.4, AIS/AIP/AIL-6)")
        start = self.timestamp(start_text, self.line_of(start_tag))
        end_text = self.component(tq, 5) if start_tag == "SCH" else ""
        if end_text:
            end = self.timestamp(end_text, self.line_of("SCH"))
        else:
            length = (
                (_duration(self.component(tq, 3), "m") if start_tag == "SCH" else None)
                or _duration(self.component(self.field("SCH", 9), 1), self.field("SCH", 10))
                or _duration(
                    self.component(self.field(start_tag, 9), 1),
                    self.component(self.field(start_tag, 10), 1),
                )
            )
            if length is None:
                length = self.options.default_duration
                self.result.warning(
                    "incomplete",
                    f"message {self.index}: no end nor duration, {length} assumed",
                    self.where(self.line_of("SCH")),
                )
            end = start + length
        if end <= start:
            raise _Broken(self.line_of("SCH"), "the appointment ends before it starts")
        return start, end

    def timestamp(self, text: str, line: int) -> datetime:
        match = _TS.fullmatch(text)
        if match is None:
            raise _Broken(line, f"not an HL7 date-time with hour: {text!r:.40}")
        year, month, day, hour, minute, second, sign, oh, om = match.groups()
        try:
            naive = datetime(
                int(year), int(month), int(day), int(hour), int(minute or 0), int(second or 0)
            )
        except ValueError:
            raise _Broken(line, f"not a date-time: {text!r:.40}") from None
        if sign:
            offset = timedelta(hours=int(oh), minutes=int(om))
            return naive.replace(tzinfo=timezone(offset if sign == "+" else -offset))
        moment, note = localise(naive, self.options.timezone)
        if note:
            self.result.warning("value", f"message {self.index}: {note}", self.where(line))
        return moment


def _rpps(text: str) -> str | None:
    """The RPPS in ``text``: 11 digits, or the IDNPS form ``8`` + 11 digits."""
    if sas.RPPS.fullmatch(text):
        return text
    if len(text) == 12 and text.startswith("8") and sas.RPPS.fullmatch(text[1:]):
        return text[1:]
    return None


def _duration(value: str, units: str) -> timedelta | None:
    """``30`` with units ``m``/``min``/``h``…, or the TQ form ``M30``; None when absent."""
    match = _DURATION.fullmatch(value)
    if match is None or int(match.group(2)) == 0:
        return None
    unit = (match.group(1) or units.split("^", 1)[0] or "m").lower()
    seconds = _UNITS.get(unit, _UNITS.get(unit[:1], 60))
    return timedelta(seconds=int(match.group(2)) * seconds)


def _appointment(
    vendor: str,
    key: str,
    *,
    id_kind: str,
    id_value: str,
    status: str,
    start: str,
    end: str,
    slot_id: str,
    practitioner_id: str,
    rpps: str,
) -> FhirJson:
    """A base-R4 Appointment, one identifier (the SCH-2 filler id, else SCH-1 placer) and the
    practitioner by reference and IDNPS, as FrAppointmentSAS has them. No patient: SIU
    carries one, but it is not ours to store."""
    actor = {
        "reference": f"Practitioner/{practitioner_id}",
        "identifier": {
            "type": {"coding": [{"system": sas.FR_V2_0203, "code": "IDNPS"}]},
            "system": sas.IDNPS_SYSTEM,
            "value": "8" + rpps,
        },
    }
    return {
        "resourceType": "Appointment",
        "id": sas.stable_id(vendor, "appt", key),
        "identifier": [sas.vendor_identifier(vendor, id_kind, id_value)],
        "status": status,
        "start": start,
        "end": end,
        "slot": [{"reference": f"Slot/{slot_id}"}],
        "participant": [{"actor": actor, "status": "accepted"}],
    }


MAPPER = registry.register(Hl7v2Mapper())
