"""A vendor's own SAS FHIR API, as it answers the SAS PS/CPTS slot search: a ``searchset``
Bundle with Slots as ``match`` and their Schedule, PractitionerRole, Practitioner (and
Location) as ``include``.

Normalised to ours: every id becomes our stable id from the vendor's (``options.vendor``)
and references are rewritten to them; ``meta`` keeps only our profile (and a Slot's
TypeCreneau security); instants are rewritten in the SAS form; the RPPS comes from the
Practitioner's IDNPS (``8`` + RPPS). One feed per Practitioner, its window the search's
(``start=ge…&start=le…`` in the Bundle's self link) or else the default window.
A Slot whose Schedule, or a Schedule whose Practitioner, is missing is an error.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from mappings import registry, sas
from mappings._feeds import default_window, reject_named
from mappings.contract import FhirJson, MappingOptions, MappingResult
from mappings.jsoninput import read_json
from mappings.localtime import TimeProblem, aware, sas_instant

KINDS = {
    "Practitioner": ("pract", sas.PROFILE_PRACTITIONER),
    "PractitionerRole": ("role", sas.PROFILE_PRACTITIONER_ROLE),
    "Schedule": ("sched", sas.PROFILE_SCHEDULE),
    "Slot": ("slot", sas.PROFILE_SLOT),
}
_REFERENCE = re.compile(r"(?:.*/)?(Practitioner|PractitionerRole|Schedule|Slot|Location)/([^/]+)$")


@dataclass
class SasFhirMapper:
    name: str = "sas-fhir"
    description: str = "a vendor's SAS FHIR API slot search answer (searchset Bundle)"

    def map(self, data: bytes, options: MappingOptions) -> MappingResult:
        result = MappingResult()
        document = read_json(data, options, result)
        if document is None:
            return result
        where = options.source
        if not (
            isinstance(document, dict)
            and document.get("resourceType") == "Bundle"
            and isinstance(document.get("entry", []), list)
        ):
            result.error("structure", "not a FHIR Bundle", where)
            return result
        vendor = options.vendor or "sas-fhir"
        found = _collect(document, where, result)
        span = _search_window(document, options, result) or default_window(options)
        _feeds(found, vendor, span, options, result)
        reject_named(result)
        return result


# (kind, vendor id) -> (resource, pointer)
Found = dict[tuple[str, str], tuple[FhirJson, str]]


def _collect(bundle: FhirJson, where: str, result: MappingResult) -> Found:
    found: Found = {}
    for index, entry in enumerate(bundle.get("entry", [])):
        at = f"{where}#/entry/{index}/resource"
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            result.error("structure", "an entry without a resource", at)
            continue
        kind, rid = resource.get("resourceType"), resource.get("id")
        if not isinstance(kind, str) or kind not in KINDS:
            continue  # Location, Organization, HealthcareService…: not part of a feed
        if not isinstance(rid, str) or not rid:
            result.error("required", f"a {kind} without an id", at)
            continue
        found[(kind, rid)] = (resource, at)
    return found


def _search_window(
    bundle: FhirJson, options: MappingOptions, result: MappingResult
) -> tuple[datetime, datetime] | None:
    links = bundle.get("link")
    for link in links if isinstance(links, list) else []:
        if not isinstance(link, dict) or link.get("relation") != "self":
            continue
        url = link.get("url")
        if not isinstance(url, str):
            return None
        bounds: dict[str, datetime] = {}
        # "+" in an offset is often sent unescaped: read it as "+", not as a space
        for name, value in parse_qsl(urlsplit(url.replace("+", "%2B")).query):
            if name == "start" and value[:2] in ("ge", "le", "gt", "lt"):
                try:
                    moment, _ = aware(value[2:], options.timezone)
                except TimeProblem:
                    result.warning("value", f"self link start {value!r:.40} unread", options.source)
                    continue
                bounds[value[0]] = moment
        if "g" in bounds and "l" in bounds and bounds["g"] < bounds["l"]:
            return bounds["g"], bounds["l"] + timedelta(milliseconds=1)
    return None


def _feeds(
    found: Found,
    vendor: str,
    span: tuple[datetime, datetime],
    options: MappingOptions,
    result: MappingResult,
) -> None:
    def ours(kind: str, rid: str) -> str:
        return sas.stable_id(vendor, KINDS[kind][0], rid)

    # every Practitioner is a feed (even with no Slot: its window empties)
    for (kind, rid), (resource, at) in found.items():
        if kind != "Practitioner":
            continue
        rpps = _rpps(resource)
        feed = result.feed(rid, rpps)
        feed.window = span
        if rpps is None:
            result.error("required", "no IDNPS 8+RPPS identifier", f"{at}/identifier", rid)
            continue
        practitioner = _normalise(resource, "Practitioner", ours)
        # the profile allows IDNPS identifiers only; the vendor's key is in our id
        practitioner["identifier"] = [
            {
                "type": {"coding": [{"system": sas.FR_V2_0203, "code": "IDNPS"}]},
                "system": sas.IDNPS_SYSTEM,
                "value": "8" + rpps,
            }
        ]
        feed.resources.append(practitioner)
    for (kind, _rid), (resource, at) in found.items():
        if kind == "PractitionerRole":
            owner = _target(resource.get("practitioner"), "Practitioner")
            if owner is None or ("Practitioner", owner) not in found:
                result.error("not-found", "its Practitioner is not in the Bundle", at)
                continue
            result.feed(owner, None).resources.append(_normalise(resource, kind, ours))
    schedules: dict[str, str] = {}  # vendor Schedule id -> practitioner key
    for (kind, rid), (resource, at) in found.items():
        if kind == "Schedule":
            actors = resource.get("actor")
            owners = (
                [_target(a, "Practitioner") for a in actors if isinstance(a, dict)]
                if isinstance(actors, list)
                else []
            )
            owner = next((o for o in owners if o and ("Practitioner", o) in found), None)
            if owner is None:
                result.error(
                    "not-found",
                    "no actor Practitioner in the Bundle (an organisation's Schedule, as in SOS, "
                    "is no practitioner's feed)",
                    f"{at}/actor",
                )
                continue
            schedules[rid] = owner
            result.feed(owner, None).resources.append(_normalise(resource, kind, ours))
    for (kind, rid), (resource, at) in found.items():
        if kind != "Slot":
            continue
        schedule = _target(resource.get("schedule"), "Schedule")
        owner = schedules.get(schedule or "")
        if owner is None:
            result.error("not-found", "its Schedule is not in the Bundle", f"{at}/schedule")
            continue
        slot = _slot(resource, rid, vendor, ours, options, result, at, owner)
        if slot is not None:
            result.feed(owner, None).slots.append(slot)


def _slot(
    resource: FhirJson,
    rid: str,
    vendor: str,
    ours: Any,
    options: MappingOptions,
    result: MappingResult,
    at: str,
    owner: str,
) -> FhirJson | None:
    out = _normalise(resource, "Slot", ours)
    try:
        start, _ = aware(resource.get("start"), options.timezone)
        end, _ = aware(resource.get("end"), options.timezone)
    except TimeProblem as problem:
        result.error("value", str(problem), f"{at}/start", owner)
        return None
    if end <= start:
        result.error("value", "end is not after start", f"{at}/end", owner)
        return None
    out["start"], out["end"] = (sas_instant(t, options.timezone) for t in (start, end))
    out["identifier"] = [sas.vendor_identifier(vendor, "slot", rid)]
    if out.get("status") not in ("free", "busy", "busy-unavailable", "busy-tentative"):
        result.error("value", f"status {out.get('status')!r:.20} unknown", f"{at}/status", owner)
        return None
    return out


def _normalise(resource: FhirJson, kind: str, ours: Any) -> FhirJson:
    out: FhirJson = copy.deepcopy(resource)
    out["id"] = ours(kind, resource["id"])
    meta: FhirJson = {"profile": [KINDS[kind][1]]}
    theirs = resource.get("meta")
    security = theirs.get("security") if kind == "Slot" and isinstance(theirs, dict) else None
    if isinstance(security, list):
        meta["security"] = [s for s in security if isinstance(s, dict)]
    out["meta"] = meta
    out.pop("text", None)
    contained = out.get("contained")
    for inner in contained if isinstance(contained, list) else []:
        if isinstance(inner, dict) and inner.get("resourceType") == "Location":
            inner["meta"] = {"profile": [sas.PROFILE_LOCATION]}
    _rewrite(out, ours)
    return out


def _rewrite(value: Any, ours: Any) -> None:
    """Every ``reference`` to a resource of the feed made ours (contained ``#x`` stays)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            ref = item.get("reference")
            if isinstance(ref, str) and (match := _REFERENCE.fullmatch(ref)):
                kind, rid = match[1], match[2]
                if kind in KINDS:
                    item["reference"] = f"{kind}/{ours(kind, rid)}"
            stack.extend(v for k, v in item.items() if k != "reference")
        elif isinstance(item, list):
            stack.extend(item)


def _target(reference: object, kind: str) -> str | None:
    if not isinstance(reference, dict) or not isinstance(reference.get("reference"), str):
        return None
    match = _REFERENCE.fullmatch(reference["reference"])
    return match[2] if match and match[1] == kind else None


def _rpps(practitioner: FhirJson) -> str | None:
    identifiers = practitioner.get("identifier")
    for identifier in identifiers if isinstance(identifiers, list) else []:
        if not isinstance(identifier, dict) or identifier.get("system") != sas.IDNPS_SYSTEM:
            continue
        value = identifier.get("value")
        if isinstance(value, str) and value[:1] == "8" and sas.RPPS.fullmatch(value[1:]):
            return value[1:]
    return None


MAPPER = registry.register(SasFhirMapper())
