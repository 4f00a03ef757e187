"""Mesoigner pharmacy slots: ``{total, slots: [{"YYYY-MM-DD": [{slot_beginning (with
offset), available_vaccines[], number_of_slots}]}]}``.

The answer names no pharmacy: the caller gives it as ``options.owner_key`` (its RPPS
through ``options.rpps_table``). A slot has a start only (``options.default_duration``,
reported) and a seat count (that many slots). The day keys only group: each slot's own
``slot_beginning`` is its time (a malformed day key such as ``2021-06-185`` is harmless).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC

from mappings import registry
from mappings._pharmacy import Offer, PharmacyFeeds, Place, capacity
from mappings.contract import MappingOptions, MappingResult
from mappings.jsoninput import pointer, read_object
from mappings.localtime import TimeProblem, aware


@dataclass
class MesoignerMapper:
    name: str = "mesoigner"
    description: str = "Mesoigner pharmacy slots (slots[] of {day: [slot_beginning...]})"

    def map(self, data: bytes, options: MappingOptions) -> MappingResult:
        result = MappingResult()
        document = read_object(data, options, result, "a Mesoigner slots answer")
        if document is None:
            return result
        where = options.source
        days = document.get("slots")
        if not isinstance(days, list):
            result.error("structure", "not a Mesoigner slots answer (no slots list)", where)
            return result
        owner = options.owner_key
        if not owner:
            result.error(
                "required", "a Mesoigner answer names no pharmacy: owner_key is needed", where
            )
            return result
        place = Place(owner)
        feeds = PharmacyFeeds(options.vendor or self.name, options, result)
        feeds.place(place)
        for index, group in enumerate(days):
            if not isinstance(group, dict):
                result.error("structure", "not an object of days", f"{where}#/slots/{index}", owner)
                continue
            for day, entries in group.items():
                at = f"{where}#{pointer('/slots', index, day)}"
                if not isinstance(entries, list):
                    result.error("structure", "not a list of slots", at, owner)
                    continue
                for number, entry in enumerate(entries):
                    offer = _offer(entry, owner, f"{at}/{number}", options, result)
                    if offer is not None:
                        feeds.add(place, offer)
        return feeds.finish()


def _offer(
    entry: object, owner: str, at: str, options: MappingOptions, result: MappingResult
) -> Offer | None:
    if not isinstance(entry, dict):
        result.error("structure", "not a slot object", at, owner)
        return None
    try:
        start, odd = aware(entry.get("slot_beginning"), options.timezone)
    except TimeProblem as problem:
        result.error("value", str(problem), f"{at}/slot_beginning", owner)
        return None
    if odd:
        result.warning("value", odd, f"{at}/slot_beginning", owner)
    vaccines = entry.get("available_vaccines")
    names = [v for v in vaccines if isinstance(v, str)] if isinstance(vaccines, list) else []
    seats = capacity(entry.get("number_of_slots"), f"{at}/number_of_slots", result, owner)
    return Offer(
        f"{owner}/{start.astimezone(UTC).isoformat()}",
        start,
        None,
        at,
        ", ".join(names) or None,
        seats,
    )


MAPPER = registry.register(MesoignerMapper())
