"""Valwin pharmacy agendas: ``{links: {...paging}, result: [{start, end, timeDivisionId,
meetingConfigurationId, title, types[], websiteUrl, pharmacyName}]}``.

``start`` and ``end`` are **naive** Paris wall-clock times (no offset): they are localised
with ``zoneinfo``, the March gap moved forward and the October repeated hour taken once,
both reported. The agenda (``meetingConfigurationId``) is the pharmacy key looked up in
``options.rpps_table``. One page is one input: paging (``links``) is the caller's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC

from mappings import registry
from mappings._pharmacy import Offer, PharmacyFeeds, Place, text
from mappings.contract import MappingOptions, MappingResult
from mappings.jsoninput import read_object
from mappings.localtime import TimeProblem, aware


@dataclass
class ValwinMapper:
    name: str = "valwin"
    description: str = "Valwin pharmacy agenda page (result[] with naive local start/end)"

    def map(self, data: bytes, options: MappingOptions) -> MappingResult:
        result = MappingResult()
        document = read_object(data, options, result, "a Valwin agenda page")
        if document is None:
            return result
        where = options.source
        items = document.get("result")
        if not isinstance(items, list):
            result.error("structure", "not a Valwin agenda page (no result list)", where)
            return result
        feeds = PharmacyFeeds(options.vendor or self.name, options, result)
        for index, item in enumerate(items):
            at = f"{where}#/result/{index}"
            if not isinstance(item, dict):
                result.error("structure", "not a slot object", at)
                continue
            agenda = item.get("meetingConfigurationId")
            if not isinstance(agenda, str) or not agenda.strip():
                result.error("required", "no meetingConfigurationId", at)
                continue
            place = Place(agenda, name=text(item.get("pharmacyName")))
            offer = _offer(item, agenda, at, options, result)
            if offer is None:
                feeds.place(place)
            else:
                feeds.add(place, offer)
        return feeds.finish()


def _offer(
    item: dict[str, object], agenda: str, at: str, options: MappingOptions, result: MappingResult
) -> Offer | None:
    try:
        start, odd_start = aware(item.get("start"), options.timezone)
        end, odd_end = aware(item.get("end"), options.timezone)
    except TimeProblem as problem:
        result.error("value", str(problem), at, agenda)
        return None
    for odd in (odd_start, odd_end):
        if odd:
            result.warning("value", odd, at, agenda)
    if end <= start:
        result.error("value", "end is not after start", f"{at}/end", agenda)
        return None
    division = item.get("timeDivisionId")
    key = division if isinstance(division, str) and division else start.astimezone(UTC).isoformat()
    types = item.get("types")
    labels = (
        [t["label"] for t in types or [] if isinstance(t, dict) and isinstance(t.get("label"), str)]
        if isinstance(types, list)
        else []
    )
    motive = ", ".join(labels) or text(item.get("title"))
    return Offer(key=f"{agenda}/{key}", start=start, end=end, location=at, motive=motive)


MAPPER = registry.register(ValwinMapper())
