"""Maiia: availabilities into SAS Slots, the RPPS from the practitioner's ``cpsId``.

Input: ``{"availabilities": <availabilities answer {items, total}>, "hcd": <the centre's hcd
answer {items: [{professional, center}]}>, "reasons": <consultation-reason-hcd {items}>,
"from": …, "to": …}`` (all but availabilities optional), or the availabilities answer
alone. The availability-closests answer (one next slot) is reported and maps nothing.

- Practitioner key: ``practitionerId``; RPPS: ``professional.cpsId`` of the hcd item whose
  ``professional.practitionerId`` is that key, else ``options.rpps_table`` (the answer alone
  carries none).
- Place: ``centerId``; name, address and position (``location.coordinates`` = [lng, lat])
  from the hcd item's ``center``.
- Slots: ``startDateTime``/``endDateTime`` (UTC ``Z``), key ``id``; reason name as motive;
  ``consultationType`` PHYSICAL -> AMB, a video type -> VR, a home type -> HH; PUBLIC.
- Window: ``from``/``to`` (the request's) when given, else ``options.now`` over
  ``options.window_days``.
"""

from __future__ import annotations

from typing import Any

from mappings import registry
from mappings._feeds import (
    FeedBuilder,
    consultation,
    fhir_address,
    items,
    label,
    number,
    obj,
    text_key,
)
from mappings.contract import MappingOptions, MappingResult
from mappings.jsoninput import pointer, read_object


class Maiia:
    name = "maiia"
    description = "Maiia availabilities JSON ({availabilities, hcd, reasons} or alone)"

    def map(self, data: bytes, options: MappingOptions) -> MappingResult:
        result = MappingResult()
        top = read_object(data, options, result, "Maiia availabilities")
        if top is None:
            return result
        build = FeedBuilder(self.name, options, result)
        if "closestPhysicalAvailability" in top:
            build.info("the closest availability only: no slots", "")
            return result
        base = "/availabilities" if "availabilities" in top else ""
        answer = obj(top.get("availabilities")) if base else top
        if answer is None or not isinstance(answer.get("items"), list):
            build.error("structure", "no availabilities items", pointer(base, "items"))
            return result
        if answer["items"] and not any("startDateTime" in (obj(r) or {}) for r in answer["items"]):
            build.error("structure", "not availabilities: no item has a startDateTime", base)
            return result
        professionals, centers = _hcd(top.get("hcd"))
        reasons = {
            text_key(r.get("id")): r
            for r in items((obj(top.get("reasons")) or {}).get("items"))
            if obj(r)
        }
        for i, raw in enumerate(answer["items"]):
            where = f"{base}/items/{i}"  # no escaping needed: fixed names and numbers
            keyed = build.keyed(raw, "practitionerId", "an availability", where)
            if keyed is None:
                continue
            record, key = keyed
            person = professionals.get(key, {})
            feed = build.practitioner(
                key,
                where,
                rpps=person.get("cpsId"),
                family=label(person.get("lastName")),
                given=label(person.get("firstName")),
            )
            place_key = text_key(record.get("centerId")) or "center"
            schedule = build.known(feed, place_key) or build.place(
                feed, place_key, **_place(centers.get(place_key, {}))
            )
            start = build.instant(record.get("startDateTime"), where + "/startDateTime", key)
            end = build.instant(record.get("endDateTime"), where + "/endDateTime", key)
            slot_key = text_key(record.get("id"))
            if slot_key is None:
                build.error("required", "an availability without id", where + "/id", key)
                continue
            if start is None or end is None:
                continue
            end = build.end(start, end, None, where, key)
            if end is None:
                continue
            reason = reasons.get(text_key(record.get("consultationReasonId")), {})
            build.slot(
                feed,
                schedule,
                slot_key,
                start,
                end,
                consultation=consultation(reason.get("consultationType")),
                motive=label(reason.get("name")),
            )
        window = None
        if "from" in top or "to" in top:
            first = build.instant(top.get("from"), "/from", None)
            last = build.instant(top.get("to"), "/to", None)
            if first is None or last is None or last <= first:
                build.reject_all("invalid", "the request window (from, to) is not a period", "")
            else:
                window = (first, last)
        return build.finish(window)


def _hcd(value: object) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Professionals by practitioner id, centres by id, from an hcd answer (or its items)."""
    records = items(value) or items((obj(value) or {}).get("items"))
    professionals: dict[str, dict[str, Any]] = {}
    centers: dict[str, dict[str, Any]] = {}
    for record in records:
        professional = obj((obj(record) or {}).get("professional")) or {}
        center = obj((obj(record) or {}).get("center")) or {}
        if (key := text_key(professional.get("practitionerId"))) is not None:
            professionals[key] = professional
        key = text_key(center.get("id"))
        if key is not None and (key not in centers or "publicInformation" in center):
            centers[key] = center  # the same centre recurs, not always with its address
    return professionals, centers


def _place(center: dict[str, Any]) -> dict[str, Any]:
    info = obj(center.get("publicInformation")) or {}
    address = obj(info.get("address")) or {}
    street = " ".join(p for p in (label(address.get("number")), label(address.get("street"))) if p)
    postal = fhir_address(
        street or None,
        label(address.get("city")),
        label(address.get("zipCode")),
        label(address.get("fullAddress")),
    )
    coordinates = items((obj(address.get("location")) or {}).get("coordinates"))
    position = None
    if len(coordinates) == 2:
        lng, lat = number(coordinates[0]), number(coordinates[1])
        position = (lat, lng) if lat is not None and lng is not None else None
    phone = label((obj(info.get("officeInformation")) or {}).get("phoneNumber"))
    return {
        "name": label(center.get("name")),
        "address": postal,
        "position": position,
        "phone": phone,
    }


MAPPER = registry.register(Maiia())
