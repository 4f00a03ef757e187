"""Bimedoc pharmacy slots: ``{id, name, coordinates: [lon, lat], street, city, postcode,
phone_number, slots: [{datetime (UTC), vaccine_name}]}``.

The pharmacy ``id`` (a UUID) is the key looked up in ``options.rpps_table``. A slot has a
start only: it lasts ``options.default_duration`` (reported). A slot has no id of its own:
its key is the pharmacy and start instant (a repeat at the same instant is one more seat).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC

from mappings import registry
from mappings._pharmacy import Offer, PharmacyFeeds, Place, text
from mappings.contract import FhirJson, MappingOptions, MappingResult
from mappings.jsoninput import read_object
from mappings.localtime import TimeProblem, aware


@dataclass
class BimedocMapper:
    name: str = "bimedoc"
    description: str = "Bimedoc pharmacy slots (slots[] of UTC datetimes)"

    def map(self, data: bytes, options: MappingOptions) -> MappingResult:
        result = MappingResult()
        document = read_object(data, options, result, "a Bimedoc slots answer")
        if document is None:
            return result
        where = options.source
        slots = document.get("slots")
        if not isinstance(slots, list):
            result.error("structure", "not a Bimedoc slots answer (no slots list)", where)
            return result
        key = text(document.get("id")) or options.owner_key
        if key is None:
            if slots:
                result.error("required", "no pharmacy id (and no owner_key given)", where)
            return result
        place = _place(key, document)
        feeds = PharmacyFeeds(options.vendor or self.name, options, result)
        feeds.place(place)
        repeats: dict[str, int] = {}
        for index, entry in enumerate(slots):
            at = f"{where}#/slots/{index}"
            if not isinstance(entry, dict):
                result.error("structure", "not a slot object", at, key)
                continue
            try:
                start, odd = aware(entry.get("datetime"), options.timezone)
            except TimeProblem as problem:
                result.error("value", str(problem), f"{at}/datetime", key)
                continue
            if odd:
                result.warning("value", odd, f"{at}/datetime", key)
            instant = start.astimezone(UTC).isoformat()
            repeats[instant] = repeats.get(instant, 0) + 1
            seat = "" if repeats[instant] == 1 else f"#{repeats[instant]}"
            motive = text(entry.get("vaccine_name"))
            feeds.add(place, Offer(f"{key}/{instant}{seat}", start, None, at, motive))
        return feeds.finish()


def _place(key: str, document: dict[str, object]) -> Place:
    address: FhirJson = {}
    if street := text(document.get("street")):
        address["line"] = [street]
    if city := text(document.get("city")):
        address["city"] = city
    if postcode := text(document.get("postcode")):
        address["postalCode"] = postcode
    position = None
    coordinates = document.get("coordinates")
    if (
        isinstance(coordinates, list)
        and len(coordinates) == 2
        and all(isinstance(c, int | float) and not isinstance(c, bool) for c in coordinates)
        and -90 <= coordinates[1] <= 90
        and -180 <= coordinates[0] <= 180
    ):
        position = (float(coordinates[1]), float(coordinates[0]))  # GeoJSON order: lon, lat
    return Place(
        key,
        name=text(document.get("name")),
        address=address or None,
        position=position,
        phone=text(document.get("phone_number")),
    )


MAPPER = registry.register(BimedocMapper())
