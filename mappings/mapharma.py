"""Mapharma pharmacy calendars: ``{"YYYY-MM-DD": [{id, time: "HH:MM", places_dispo}]}``.

The answer of ``/api/public/calendar/{campagneId}/{date}/{optionId}`` names no pharmacy:
the caller gives it as ``options.owner_key`` (its RPPS through ``options.rpps_table``).
Times are naive Paris wall-clock times; no end is given (the motive's "(15 min.)" lives in
another call), so every slot lasts ``options.default_duration``, reported once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from mappings import registry
from mappings._pharmacy import Offer, PharmacyFeeds, Place, capacity
from mappings.contract import MappingOptions, MappingResult
from mappings.jsoninput import pointer, read_object
from mappings.localtime import localise


@dataclass
class MapharmaMapper:
    name: str = "mapharma"
    description: str = "Mapharma pharmacy calendar (dates -> [{id, time, places_dispo}])"

    def map(self, data: bytes, options: MappingOptions) -> MappingResult:
        result = MappingResult()
        document = read_object(data, options, result, "a Mapharma calendar: dates to slots")
        if document is None:
            return result
        where = options.source
        if not options.owner_key:
            result.error(
                "required", "a Mapharma calendar names no pharmacy: owner_key is needed", where
            )
            return result
        vendor = options.vendor or self.name
        feeds = PharmacyFeeds(vendor, options, result)
        place = Place(options.owner_key)
        feeds.place(place)
        for day, entries in document.items():
            at = f"{where}#{pointer('', day)}"
            if not isinstance(entries, list):
                result.error("structure", "not a list of slots", at, options.owner_key)
                continue
            for index, entry in enumerate(entries):
                offer = _offer(entry, day, f"{at}/{index}", options, result)
                if offer is not None:
                    feeds.add(place, offer)
        return feeds.finish()


def _offer(
    entry: object, day: str, at: str, options: MappingOptions, result: MappingResult
) -> Offer | None:
    owner = options.owner_key
    if not isinstance(entry, dict):
        result.error("structure", "not a slot object", at, owner)
        return None
    time = entry.get("time")
    try:
        naive = datetime.strptime(f"{day} {time}", "%Y-%m-%d %H:%M")
    except (TypeError, ValueError):
        result.error("value", f"not a date and HH:MM time: {day!r:.20} {time!r:.20}", at, owner)
        return None
    start, odd = localise(naive, options.timezone)
    if odd:
        result.warning("value", odd, at, owner)
    seats = capacity(entry.get("places_dispo"), f"{at}/places_dispo", result, owner)
    slot_id = entry.get("id")
    key = (
        str(slot_id)
        if isinstance(slot_id, int | str) and str(slot_id)
        else start.astimezone(UTC).isoformat()
    )
    return Offer(key=f"{owner}/{key}", start=start, end=None, location=at, capacity=seats)


MAPPER = registry.register(MapharmaMapper())
