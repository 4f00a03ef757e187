"""Avecmondoc: availabilities per day into SAS Slots.

Input: ``{"availabilities": <availabilitiesPerDay answer: [{start, end, slots[]}]>, "doctor":
<doctor by slug>, "organization": <organization by slug>, "reasons": <reasons list>,
"consultationReasonId": …}`` (all but availabilities optional), or the per-day list alone.

- Practitioner key: ``businessHours.extendedProps.doctorId``; name from ``doctor`` when its
  ``id`` is that key; RPPS from ``options.rpps_table`` (Avecmondoc carries none).
- Place: ``extendedProps.organizationId``; name, address, position, phone and FINESS
  (``finessNumber``, when not null) from ``organization`` when its ``id`` matches.
- Slots: ``businessHours.start``/``end`` (UTC ``Z``) of the entries with ``isAvailable``
  true, key ``businessHours.id``. ``extendedProps.type`` ``inOffice`` -> AMB, a video type ->
  VR, a home type -> HH; motive: the reason named by ``consultationReasonId``; PUBLIC.
- Window: from the first day's ``start`` to the last day's ``end`` (the request's
  ``periodStart``..``periodEnd``), else ``options.now`` over ``options.window_days``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
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
from mappings.jsoninput import pointer, read_json


class Avecmondoc:
    name = "avecmondoc"
    description = "Avecmondoc availabilitiesPerDay JSON ({availabilities, doctor, organization})"

    def map(self, data: bytes, options: MappingOptions) -> MappingResult:
        result = MappingResult()
        document = read_json(data, options, result)
        if document is None:
            return result
        build = FeedBuilder(self.name, options, result)
        top = obj(document) or {}
        base = "/availabilities" if "availabilities" in top else ""
        days = top.get("availabilities") if base else document
        if not isinstance(days, list):
            build.error("structure", "expected a list of days", base)
            return result
        doctor = obj(top.get("doctor")) or {}
        organization = obj(top.get("organization")) or {}
        reason_id = text_key(top.get("consultationReasonId"))
        reason: dict[str, Any] = next(
            (r for r in items(top.get("reasons")) if obj(r) and text_key(r.get("id")) == reason_id),
            {},
        )
        build.motive = reason_id
        bounds: list[datetime] = []
        seen_days = 0
        for i, raw_day in enumerate(days):
            day_where = pointer(base, i)
            entry = obj(raw_day)
            if entry is None:
                build.error("structure", "a day is not a JSON object", day_where)
                continue
            if "slots" not in entry:
                continue  # the trailer: {nextAvailableBusinessHour…}
            seen_days += 1
            for edge in ("start", "end"):
                moment = build.instant(entry.get(edge), pointer(day_where, edge), None)
                if moment is not None:
                    bounds.append(moment)
            for j, raw in enumerate(items(entry.get("slots"))):
                self._slot(
                    build, obj(raw), pointer(day_where, "slots", j), doctor, organization, reason
                )
        if days and not seen_days:
            build.error("structure", "not availabilities per day: no day has slots", base)
            return result
        asked = text_key(doctor.get("id"))
        if asked is not None and not any(f.key == asked for f in result.feeds):
            # the doctor asked for offers nothing: an empty snapshot, its slots have gone
            feed = build.practitioner(
                asked,
                "/doctor",
                family=label(doctor.get("lastname")),
                given=label(doctor.get("firstname")),
            )
            place_key = text_key(organization.get("id")) or "organization"
            build.place(feed, place_key, **_place(organization))
        window = None
        if bounds:
            # the last day ends at 21:59:59.999Z: the window ends just after it
            window = (min(bounds), max(bounds) + timedelta(milliseconds=1))
        return build.finish(window)

    def _slot(
        self,
        build: FeedBuilder,
        record: dict[str, Any] | None,
        where: str,
        doctor: dict[str, Any],
        organization: dict[str, Any],
        reason: dict[str, Any],
    ) -> None:
        if record is None:
            build.error("structure", "a slot is not a JSON object", where)
            return
        if record.get("isAvailable") is not True:
            return
        hours = obj(record.get("businessHours"))
        if hours is None:
            build.error("required", "an available slot without businessHours", where)
            return
        where = pointer(where, "businessHours")
        props = obj(hours.get("extendedProps")) or {}
        key = text_key(props.get("doctorId"))
        if key is None:
            build.error("required", "a slot without doctorId", pointer(where, "extendedProps"))
            return
        same_doctor = text_key(doctor.get("id")) == key
        feed = build.practitioner(
            key,
            where,
            family=label(doctor.get("lastname")) if same_doctor else None,
            given=label(doctor.get("firstname")) if same_doctor else None,
        )
        place_key = text_key(props.get("organizationId")) or "organization"
        same_place = text_key(organization.get("id")) == place_key
        schedule = build.known(feed, place_key) or build.place(
            feed, place_key, **(_place(organization) if same_place else {})
        )
        slot_id = text_key(hours.get("id"))
        start = build.instant(hours.get("start"), pointer(where, "start"), key)
        end = build.instant(hours.get("end"), pointer(where, "end"), key)
        if slot_id is None:
            build.error("required", "a slot without id", pointer(where, "id"), key)
            return
        if start is None or end is None:
            return
        checked = build.end(start, end, None, where, key)
        if checked is None:
            return
        build.slot(
            feed,
            schedule,
            slot_id,
            start,
            checked,
            consultation=consultation(props.get("type"), reason.get("type")),
            motive=label(reason.get("reason")),
        )


def _place(organization: dict[str, Any]) -> dict[str, Any]:
    coordinates = obj(organization.get("coordinates")) or {}
    lat, lng = number(coordinates.get("lat")), number(coordinates.get("lng"))
    address = fhir_address(
        None,
        label(organization.get("city")),
        label(organization.get("zipCode")),
        label(organization.get("address")),
    )
    finess = organization.get("finessNumber")
    return {
        "name": label(organization.get("name")),
        "address": address,
        "position": (lat, lng) if lat is not None and lng is not None else None,
        "phone": label(organization.get("phone")),
        "structure_id": finess if isinstance(finess, str) and finess.isdigit() else None,
    }


MAPPER = registry.register(Avecmondoc())
