"""Doctolib: a booking page and its availabilities into SAS Slots.

Input: one JSON object ``{"booking": <booking.json>, "availabilities": <availabilities.json>}``
with optional ``agenda_id``, ``practice_id``, ``visit_motive_id`` naming what the
availabilities were asked for (``availabilities.json?agenda_ids&practice_ids&visit_motive_ids``
does not say it in its answer). Without them: the booking's only agenda, that agenda's first
practice, and its only motive for that practice. The availabilities document alone maps
nothing (it names no agenda): that is reported.

- Practitioner key: the agenda id (a Doctolib agenda is one practitioner's); RPPS from
  ``options.rpps_table`` (Doctolib carries none).
- Slots: ``availabilities[].slots[]``, a string or ``{start_date, steps}`` (offset in the
  string); a day without a time (``"2021-04-10"``) is refused. No end and no motive duration
  in the payloads: ``options.default_duration`` (reported). AMB, PUBLIC.
- Window: the days of ``availabilities[].date`` (the request's ``start_date`` + ``limit``
  days) when given, else ``options.now`` over ``options.window_days``.
"""

from __future__ import annotations

from typing import Any

from mappings import registry
from mappings._feeds import (
    FeedBuilder,
    day,
    fhir_address,
    instant_key,
    items,
    label,
    number,
    obj,
    text_key,
)
from mappings.contract import MappingOptions, MappingResult
from mappings.jsoninput import pointer, read_object


class Doctolib:
    name = "doctolib"
    description = "Doctolib booking + availabilities JSON ({booking, availabilities})"

    def map(self, data: bytes, options: MappingOptions) -> MappingResult:
        result = MappingResult()
        top = read_object(data, options, result, "Doctolib {booking, availabilities}")
        if top is None:
            return result
        build = FeedBuilder(self.name, options, result)
        if not isinstance(obj(top.get("booking")), dict):
            shape = "availabilities without a booking" if "availabilities" in top else ""
            build.error(
                "required",
                f"expected {{booking, availabilities}}{': got ' + shape if shape else ''}; "
                "the agenda (practitioner) and its place are in the booking",
                "",
            )
            return result
        booking = obj((obj(top["booking"]) or {}).get("data")) or {}
        availabilities = obj(top.get("availabilities"))
        if availabilities is None:
            build.error("required", "no availabilities document", "/availabilities")
            return result
        agenda = _agenda(booking, top.get("agenda_id"), build)
        if agenda is None:
            return result
        key, agenda_record = agenda
        feed = build.practitioner(key, "/booking/data/agendas")
        practice = text_key(top.get("practice_id")) or _first_practice(agenda_record, booking)
        place = _place(booking, practice)
        position = None
        lat, lng = number(place.get("latitude")), number(place.get("longitude"))
        if lat is not None and lng is not None:
            position = (lat, lng)
        address = fhir_address(
            label(place.get("address")),
            label(place.get("city")),
            label(place.get("zipcode")),
            label(place.get("full_address")),
        )
        chosen = _motive(booking, agenda_record, practice, top.get("visit_motive_id"))
        build.motive, motive = chosen or (None, None)
        schedule = build.place(
            feed,
            practice or "default",
            name=label(place.get("name")),
            address=address,
            position=position,
        )
        days = []
        base = "/availabilities/availabilities"
        for i, entry in enumerate(items(availabilities.get("availabilities"))):
            entry_obj = obj(entry) or {}
            if (d := day(entry_obj.get("date"))) is not None:
                days.append(d)
            for j, raw in enumerate(items(entry_obj.get("slots"))):
                where = pointer(base, i, "slots", j)
                value = raw if isinstance(raw, str) else (obj(raw) or {}).get("start_date")
                if isinstance(value, str) and len(value) == 10:
                    build.error("invalid", f"{value!r} is a day, not a time", where, key)
                    continue
                start = build.instant(value, where, key)
                if start is None:
                    continue
                end = build.end(start, None, None, where, key)
                if end is not None:
                    build.slot(
                        feed, schedule, f"{key}-{instant_key(start)}", start, end, motive=motive
                    )
        window = build.day_window(min(days), max(days)) if days else None
        return build.finish(window)


def _agenda(
    booking: dict[str, Any], wanted: object, build: FeedBuilder
) -> tuple[str, dict[str, Any]] | None:
    agendas = [a for a in items(booking.get("agendas")) if obj(a) and text_key(a.get("id"))]
    if wanted is not None:
        for agenda in agendas:
            if text_key(agenda["id"]) == text_key(wanted):
                return str(text_key(agenda["id"])), agenda
        build.error("not-found", f"agenda {wanted!r:.40} is not in the booking", "/agenda_id")
        return None
    if len(agendas) != 1:
        build.error(
            "required",
            f"the booking has {len(agendas)} agendas: name the one of these availabilities "
            "in agenda_id",
            "/booking/data/agendas",
        )
        return None
    return str(text_key(agendas[0]["id"])), agendas[0]


def _first_practice(agenda: dict[str, Any], booking: dict[str, Any]) -> str | None:
    by_practice = obj(agenda.get("visit_motive_ids_by_practice_id")) or {}
    for practice in by_practice:
        return practice
    for place in items(booking.get("places")):
        for practice in items((obj(place) or {}).get("practice_ids")):
            if text_key(practice):
                return text_key(practice)
    return None


def _place(booking: dict[str, Any], practice: str | None) -> dict[str, Any]:
    for place in items(booking.get("places")):
        place_obj = obj(place) or {}
        if practice in {text_key(p) for p in items(place_obj.get("practice_ids"))}:
            return place_obj
    return {}


def _motive(
    booking: dict[str, Any], agenda: dict[str, Any], practice: str | None, wanted: object
) -> tuple[str, str | None] | None:
    """The (id, name) of the motive the availabilities were asked for, when known."""
    ids = [text_key(wanted)] if wanted is not None else []
    if not ids and practice is not None:
        offered = items((obj(agenda.get("visit_motive_ids_by_practice_id")) or {}).get(practice))
        ids = [text_key(m) for m in offered] if len(offered) == 1 else []
    if not ids or ids[0] is None:
        return None
    for motive in items(booking.get("visit_motives")):
        motive_obj = obj(motive) or {}
        if text_key(motive_obj.get("id")) == ids[0]:
            return ids[0], label(motive_obj.get("name"))
    return ids[0], None


MAPPER = registry.register(Doctolib())
