"""A tiny real mapper over a simple JSON shape, for the ingestion's tests and benchmark.

    {"window": {"start": ISO, "end": ISO} | null,        # null: an event feed
     "practitioners": [{"key", "rpps"?, "family"?, "given"?, "place",
                        "slots": [{"key", "start", "end"?, "status"?, "types"?}]}]}

It uses the shared mapping core (``read_json``, ``localtime``, ``sas`` builders) the way a
vendor module does, and registers itself as ``test-simple`` when imported.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from mappings import registry, sas
from mappings.contract import MappingOptions, MappingResult
from mappings.jsoninput import pointer, read_json
from mappings.localtime import TimeProblem, aware

NAME = "test-simple"


class SimpleMapper:
    name = NAME
    description = "test-only JSON: practitioners with their slots"

    def map(self, data: bytes, options: MappingOptions) -> MappingResult:
        result = MappingResult()
        doc = read_json(data, options, result)
        if doc is None:
            return result
        where = options.source + "#"
        vendor = options.vendor or "simple"
        window = None
        if isinstance(doc, dict) and isinstance(doc.get("window"), dict):
            try:
                low, _ = aware(doc["window"]["start"], options.timezone)
                high, _ = aware(doc["window"]["end"], options.timezone)
                window = (low, high)
            except (TimeProblem, KeyError) as exc:
                result.error("value", f"bad window: {exc}", where + "/window")
                return result
        people = doc.get("practitioners") if isinstance(doc, dict) else None
        if not isinstance(people, list):
            result.error("structure", "no practitioners list", where + "/practitioners")
            return result
        for n, person in enumerate(people):
            self._person(person, pointer("/practitioners", n), vendor, window, options, result)
        return result

    def _person(
        self,
        person: Any,
        at: str,
        vendor: str,
        window: Any,
        options: MappingOptions,
        result: MappingResult,
    ) -> None:
        where = options.source + "#" + at
        if not isinstance(person, dict) or not isinstance(person.get("key"), str):
            result.error("structure", "a practitioner needs a key", where)
            return
        key = person["key"]
        rpps = person.get("rpps") or options.rpps_table.get(key)
        feed = result.feed(key, rpps)
        feed.window = window
        if not isinstance(rpps, str) or not sas.RPPS.fullmatch(rpps):
            result.error("not-found", f"no RPPS for practitioner {key}", where, key)
            return
        place = str(person.get("place", "main"))
        feed.resources = [
            sas.practitioner(vendor, key, rpps, person.get("family"), person.get("given")),
            sas.practitioner_role(
                vendor,
                key,
                place,
                place_name=person.get("placeName"),
                address={"line": ["1 place du Marché"], "city": "Rennes", "postalCode": "35000"},
            ),
            sas.schedule(vendor, key, place),
        ]
        schedule = sas.schedule_id(vendor, key, place)
        for n, item in enumerate(person.get("slots") or []):
            slot_at = pointer(at, "slots", n)
            try:
                start, _ = aware(item["start"], options.timezone)
                if item.get("end") is None:
                    end = start + options.default_duration
                    result.warning("incomplete", "no end: default duration", slot_at, key)
                else:
                    end, _ = aware(item["end"], options.timezone)
            except (TimeProblem, KeyError, TypeError) as exc:
                result.error("value", f"bad slot: {exc}", options.source + "#" + slot_at, key)
                continue
            if end <= start:
                result.error("value", "ends before it starts", options.source + "#" + slot_at, key)
                continue
            feed.slots.append(
                sas.slot(
                    vendor,
                    schedule,
                    f"{key}-{item.get('key') or start.isoformat()}",  # unique per vendor
                    start,
                    end,
                    options.timezone,
                    slot_types=tuple(item.get("types") or ("PUBLIC",)),
                    status=str(item.get("status", "free")),
                    booking_url=options.booking_url,
                )
            )


SIMPLE = registry.register(SimpleMapper())


def feed_json(
    people: list[dict[str, Any]], window: tuple[str, str] | None = ("2026-06-12", "2026-06-14")
) -> dict[str, Any]:
    """A document of this format (``window`` as local dates: midnight to midnight)."""
    doc: dict[str, Any] = {"practitioners": people}
    doc["window"] = (
        {"start": f"{window[0]}T00:00:00", "end": f"{window[1]}T00:00:00"} if window else None
    )
    return doc


def person(key: str, rpps: str | None, slots: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"key": key, "family": "Martin", "given": "Alice", "place": "cab"}
    if rpps:
        out["rpps"] = rpps
    out["slots"] = slots
    return out


def slots(day: str, count: int, first_hour: int = 8, minutes: int = 15) -> list[dict[str, Any]]:
    """``count`` consecutive slots of ``minutes`` from ``first_hour`` on ``day`` (local)."""
    out = []
    for n in range(count):
        start = timedelta(hours=first_hour, minutes=n * minutes)
        end = start + timedelta(minutes=minutes)
        out.append(
            {"key": f"{day}-{n}", "start": f"{day}T{_hm(start)}:00", "end": f"{day}T{_hm(end)}:00"}
        )
    return out


def _hm(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes // 60:02d}:{minutes % 60:02d}"
