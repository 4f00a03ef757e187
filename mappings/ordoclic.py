"""Ordoclic: available slots of an entity into SAS Slots.

Input: ``{"profile": <public/entities/profile answer>, "reasons": <solar reasons answer>,
"slots": <solar/slots/availableSlots answer>, "request": {"dateStart", "dateEnd"}}`` (all but
slots optional), or the availableSlots answer alone (``{"slots": [...],
"nextAvailableSlotDate"}``).

- Practitioner key: ``medicalStaffID``; name from the profile's ``publicProfessionals``; RPPS
  from ``options.rpps_table`` (Ordoclic carries none).
- Place: the profile's ``entityId`` (main address of ``listAddress``, phone), else the slot's
  ``calendarId``.
- Slots: ``timeStart``/``timeEnd`` (UTC ``Z``; ``tzId`` is for display), key ``id`` (+ the
  start for ``isRepeated`` ones: each occurrence of a repeated slot carries the same id);
  only ``status.statusID`` 0 (free) is offered. Missing end: the first reason's ``duration``,
  else the default. VR for the "Téléconsultation" reason (``reasonTypeId`` 2 in the samples) or
  a video name; PUBLIC.
- Window: ``request.dateStart``..``dateEnd`` (the POST body's) when given, else
  ``options.now`` over ``options.window_days``.
"""

from __future__ import annotations

from typing import Any

from mappings import registry
from mappings._feeds import (
    FeedBuilder,
    consultation,
    fhir_address,
    instant_key,
    items,
    label,
    minutes,
    number,
    obj,
    text_key,
)
from mappings.contract import MappingOptions, MappingResult
from mappings.jsoninput import pointer, read_object

_VIDEO_REASON_TYPE = 2


class Ordoclic:
    name = "ordoclic"
    description = "Ordoclic availableSlots JSON ({profile, reasons, slots, request} or alone)"

    def map(self, data: bytes, options: MappingOptions) -> MappingResult:
        result = MappingResult()
        top = read_object(data, options, result, "Ordoclic slots")
        if top is None:
            return result
        build = FeedBuilder(self.name, options, result)
        combined = isinstance(top.get("slots"), dict)
        base = "/slots" if combined else ""
        answer = obj(top.get("slots")) if combined else top
        if answer is None or not isinstance(answer.get("slots"), list):
            build.error("structure", "no slots list", pointer(base, "slots"))
            return result
        profile = obj(top.get("profile")) or {}
        people = {
            text_key(p.get("id")): p for p in items(profile.get("publicProfessionals")) if obj(p)
        }
        reasons = {
            text_key(r.get("id")): r
            for r in items((obj(top.get("reasons")) or {}).get("reasons"))
            if obj(r)
        }
        if not answer["slots"]:
            build.info("no slots", pointer(base, "slots"))
        entity = text_key(profile.get("entityId"))
        for i, raw in enumerate(answer["slots"]):
            where = f"{base}/slots/{i}"  # no escaping needed: fixed names and numbers
            keyed = build.keyed(raw, "medicalStaffID", "a slot", where)
            if keyed is None:
                continue
            record, key = keyed
            person = people.get(key, {})
            feed = build.practitioner(
                key,
                where,
                family=label(person.get("lastName")),
                given=label(person.get("firstName")),
            )
            place_key = entity or text_key(record.get("calendarId")) or "calendar"
            schedule = build.known(feed, place_key) or build.place(
                feed, place_key, **(_place(profile) if entity else {})
            )
            status = obj(record.get("status")) or {}
            if status.get("statusID", 0) != 0:
                continue  # not free: not offered
            slot_id = text_key(record.get("id"))
            start = build.instant(record.get("timeStart"), where + "/timeStart", key)
            if slot_id is None:
                build.error("required", "a slot without id", where + "/id", key)
                continue
            if start is None:
                continue
            end = None
            if record.get("timeEnd") is not None:
                end = build.instant(record.get("timeEnd"), where + "/timeEnd", key)
                if end is None:
                    continue
            reason_ids = items(record.get("reasonIDs"))
            reason = reasons.get(text_key(reason_ids[0]) if reason_ids else None, {})
            end = build.end(start, end, minutes(reason.get("duration")), where, key)
            if end is None:
                continue
            video = reason.get("reasonTypeId") == _VIDEO_REASON_TYPE
            slot_key = f"{slot_id}-{instant_key(start)}" if record.get("isRepeated") else slot_id
            build.slot(
                feed,
                schedule,
                slot_key,
                start,
                end,
                consultation="VR" if video else consultation(reason.get("name")),
                motive=label(reason.get("name")) or label(record.get("name")),
            )
        window = None
        request = obj(top.get("request"))
        asked = text_key((request or {}).get("medicalStaffId"))
        if asked is not None and not any(f.key == asked for f in result.feeds):
            # the practitioner asked for offers nothing: an empty snapshot
            person = people.get(asked, {})
            feed = build.practitioner(
                asked,
                "/request/medicalStaffId",
                family=label(person.get("lastName")),
                given=label(person.get("firstName")),
            )
            build.place(feed, entity or "calendar", **(_place(profile) if entity else {}))
        if request is not None:
            first = build.instant(request.get("dateStart"), "/request/dateStart", None)
            last = build.instant(request.get("dateEnd"), "/request/dateEnd", None)
            if first is None or last is None or last <= first:
                build.reject_all("invalid", "the request window is not a period", "/request")
            else:
                window = (first, last)
        return build.finish(window)


def _place(profile: dict[str, Any]) -> dict[str, Any]:
    addresses = [a for a in items(profile.get("listAddress")) if obj(a)]
    main = next((a for a in addresses if a.get("isMainAddress") is True), None) or (
        addresses[0] if addresses else {}
    )
    lat, lng = number(main.get("lat")), number(main.get("lng"))
    street = label(main.get("address") or profile.get("address"))
    address = fhir_address(
        street,
        label(main.get("city") or profile.get("city")),
        label(main.get("zip") or profile.get("zip")),
    )
    return {
        "name": label(profile.get("name")),
        "address": address,
        "position": (lat, lng) if lat is not None and lng is not None else None,
        "phone": label(profile.get("phone")),
    }


MAPPER = registry.register(Ordoclic())
