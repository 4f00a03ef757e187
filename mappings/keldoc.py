"""Keldoc: a motive's timetable into SAS Slots.

Input: ``{"timetable": <timetables/{motive_id} answer>, "motive": <the motive from
motive_categories>, "cabinet": <the cabinet>}`` (motive and cabinet optional), or the
timetable answer alone. A timetable is ``{"availabilities": {"YYYY-MM-DD": [{start_time,
agenda_id?}]}}``; the next-slot (``{date}``) and phone-only (``{phone_number}``) answers hold
no slots and are reported (information), mapping nothing.

- Practitioner key: the agenda id (``agenda_id`` of the slot, else the motive's only agenda);
  a slot of no known agenda is an error of its own. RPPS from ``options.rpps_table``.
- Place: the cabinet id (name, address text, position); without a cabinet, ``agenda``.
- Slots: ``start_time`` (``+0200`` offsets without a colon); entries without one (``{"agenda_id":
  null}`` occurs) are skipped. No end, no motive duration: ``options.default_duration``
  (reported). VR when the motive says ``teleconsultation``, else AMB; PUBLIC.
- Window: the days of ``availabilities`` (the request's ``from``..``to``, empty days included),
  else ``options.now`` over ``options.window_days``.
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


class Keldoc:
    name = "keldoc"
    description = "Keldoc timetable JSON ({timetable, motive, cabinet} or the timetable alone)"

    def map(self, data: bytes, options: MappingOptions) -> MappingResult:
        result = MappingResult()
        top = read_object(data, options, result, "a Keldoc timetable")
        if top is None:
            return result
        build = FeedBuilder(self.name, options, result)
        base = "/timetable" if "timetable" in top else ""
        timetable = obj(top.get("timetable")) if base else top
        motive = obj(top.get("motive")) or {}
        cabinet = obj(top.get("cabinet")) or {}
        if timetable is None:
            build.error("structure", "the timetable is not a JSON object", base)
            return result
        by_day = timetable.get("availabilities")
        if not isinstance(by_day, dict):
            if "phone_number" in timetable:
                what = "booking by phone only: no slots"
            elif "date" in timetable:
                what = "a next-available date only: no slots"
            else:
                what = "no availabilities"
            build.info(what, pointer(base, "availabilities"))
            return result
        agendas = [text_key((obj(a) or {}).get("id")) for a in items(motive.get("agendas"))]
        only_agenda = agendas[0] if len(agendas) == 1 else None
        kind = "VR" if motive.get("teleconsultation") is True else "AMB"
        motive_name = label(motive.get("name"))
        build.motive = text_key(motive.get("id"))
        place_key, place = _place(cabinet)
        days = [d for d in (day(k) for k in by_day) if d is not None]
        for date_key, entries in by_day.items():
            if day(date_key) is None:
                build.error(
                    "invalid",
                    f"{date_key!r:.40} is not a day",
                    pointer(base, "availabilities", date_key),
                )
            for i, raw in enumerate(items(entries)):
                where = pointer(base, "availabilities", date_key, i)
                entry = obj(raw)
                if entry is None:
                    build.error("structure", "a slot is not a JSON object", where)
                    continue
                if entry.get("start_time") is None:
                    continue  # Keldoc sends such placeholders
                key = text_key(entry.get("agenda_id")) or only_agenda
                if key is None:
                    build.error("required", "a slot of no known agenda (no agenda_id)", where)
                    continue
                start = build.instant(entry.get("start_time"), pointer(where, "start_time"), key)
                feed = build.practitioner(key, where)
                schedule = build.place(feed, place_key, **place)
                if start is None:
                    continue
                end = build.end(start, None, None, where, key)
                if end is not None:
                    build.slot(
                        feed,
                        schedule,
                        f"{key}-{instant_key(start)}",
                        start,
                        end,
                        consultation=kind,
                        motive=motive_name,
                    )
        # every agenda asked for has a feed, an empty one when it offers nothing: its
        # slots in the window have gone
        for i, key in enumerate(agendas):
            if key is not None:
                feed = build.practitioner(key, pointer("/motive/agendas", i))
                build.place(feed, place_key, **place)
        return build.finish(build.day_window(min(days), max(days)) if days else None)


def _place(cabinet: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    lat, lng = number(cabinet.get("latitude")), number(cabinet.get("longitude"))
    text = label(cabinet.get("location"))
    return text_key(cabinet.get("id")) or "agenda", {
        "name": label(cabinet.get("name")),
        "address": fhir_address(None, None, None, text),
        "position": (lat, lng) if lat is not None and lng is not None else None,
    }


MAPPER = registry.register(Keldoc())
