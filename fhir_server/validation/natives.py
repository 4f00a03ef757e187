"""R4 invariants written in Python, keyed by their exact R4 FHIRPath text.

``ele-1``, ``ext-1``, ``dom-2`` to ``dom-6``, ``ref-1`` and ``txt-1``/``txt-2`` apply to nearly
every element; ``bdl-*``, ``cpt-2``, ``att-1``, ``per-1``, ``org-1`` and ``app-*`` to the types
the SAS exchanges use. ``fhirpathpy`` takes about half a millisecond per evaluation and lacks
``hasValue()`` and ``htmlChecks()``; these take microseconds. ``tests/validation/
test_invariants.py`` checks each one against ``fhirpathpy`` on sample values.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fhir_server.core import fhirtime
from fhir_server.validation.compiled import Check, Element

if TYPE_CHECKING:
    from fhir_server.validation.context import Frame


def norm(expression: str) -> str:
    return " ".join(expression.split())


def ele_1(item: Any, frame: Frame, element: Element) -> bool:
    if isinstance(item, dict):
        return any(k != "id" for k in item)
    return item is not None and item != [] and item != {}


def _ext_1(item: Any, frame: Frame, element: Element) -> bool:
    if not isinstance(item, dict):
        return True
    has_ext = bool(item.get("extension"))
    has_value = any(k.startswith("value") for k in item)
    return has_ext != has_value


def _contained(item: Any) -> list[dict[str, Any]]:
    if not isinstance(item, dict):
        return []
    value = item.get("contained")
    return [c for c in value if isinstance(c, dict)] if isinstance(value, list) else []


def _dom_2(item: Any, frame: Frame, element: Element) -> bool:
    return not any(c.get("contained") for c in _contained(item))


def _strings(value: Any, out: set[str]) -> set[str]:
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            out.add(v)
        elif isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return out


def _dom_3(item: Any, frame: Frame, element: Element) -> bool:
    contained = _contained(item)
    if not contained:
        return True
    # References, canonicals, uris and urls anywhere in the resource: every string is a
    # superset of those, so nothing referenced is ever reported.
    refs = _strings({k: v for k, v in item.items() if k != "contained"}, set())
    for c in contained:
        refs |= _strings(c, set())
    for c in contained:
        cid = c.get("id")
        if isinstance(cid, str) and f"#{cid}" in refs:
            continue
        if "#" in _strings(c, set()):  # refers to its container
            continue
        return False
    return True


def _dom_4(item: Any, frame: Frame, element: Element) -> bool:
    for c in _contained(item):
        meta = c.get("meta")
        if isinstance(meta, dict) and ("versionId" in meta or "lastUpdated" in meta):
            return False
    return True


def _dom_5(item: Any, frame: Frame, element: Element) -> bool:
    for c in _contained(item):
        meta = c.get("meta")
        if isinstance(meta, dict) and meta.get("security"):
            return False
    return True


def _dom_6(item: Any, frame: Frame, element: Element) -> bool:
    text = item.get("text") if isinstance(item, dict) else None
    return isinstance(text, dict) and "div" in text


def _ref_1(item: Any, frame: Frame, element: Element) -> bool:
    ref = item.get("reference") if isinstance(item, dict) else None
    if not isinstance(ref, str) or not ref.startswith("#") or ref == "#":
        return True
    return ref[1:] in frame.root_contained_ids()


def _get(item: Any, key: str) -> Any:
    return item.get(key) if isinstance(item, dict) else None


def _entries(item: Any) -> list[Any]:
    entries = _get(item, "entry")
    return entries if isinstance(entries, list) else []


def _bdl_1(item: Any, frame: Frame, element: Element) -> bool:
    return _get(item, "total") is None or _get(item, "type") in ("searchset", "history")


def _bdl_2(item: Any, frame: Frame, element: Element) -> bool:
    searched = any(isinstance(e, dict) and "search" in e for e in _entries(item))
    return not searched or _get(item, "type") == "searchset"


def _bdl_3(item: Any, frame: Frame, element: Element) -> bool:
    want = _get(frame.resource, "type") in ("batch", "transaction", "history")
    return all(isinstance(e, dict) and ("request" in e) == want for e in _entries(item))


def _bdl_4(item: Any, frame: Frame, element: Element) -> bool:
    want = _get(frame.resource, "type") in ("batch-response", "transaction-response", "history")
    return all(isinstance(e, dict) and ("response" in e) == want for e in _entries(item))


def _bdl_5(item: Any, frame: Frame, element: Element) -> bool:
    return isinstance(item, dict) and any(k in item for k in ("resource", "request", "response"))


def _bdl_7(item: Any, frame: Frame, element: Element) -> bool | None:
    if _get(item, "type") == "history":
        return True
    seen = set()
    for e in _entries(item):
        full_url = _get(e, "fullUrl")
        if full_url is None:
            continue
        version = _get(_get(_get(e, "resource"), "meta"), "versionId")
        key = (full_url, version)
        if not isinstance(full_url, str) or not isinstance(version, str | None):
            return None
        if key in seen:
            return False
        seen.add(key)
    return True


def _bdl_8(item: Any, frame: Frame, element: Element) -> bool:
    full_url = _get(item, "fullUrl")
    return not isinstance(full_url, str) or "/_history/" not in full_url


def _bdl_9(item: Any, frame: Frame, element: Element) -> bool:
    identifier = _get(item, "identifier")
    return _get(item, "type") != "document" or (
        _get(identifier, "system") is not None and _get(identifier, "value") is not None
    )


def _bdl_10(item: Any, frame: Frame, element: Element) -> bool:
    return _get(item, "type") != "document" or isinstance(_get(item, "timestamp"), str)


def _first_resource_is(item: Any, kind: str) -> bool:
    entries = _entries(item)
    return bool(entries) and _get(_get(entries[0], "resource"), "resourceType") == kind


def _bdl_11(item: Any, frame: Frame, element: Element) -> bool:
    return _get(item, "type") != "document" or _first_resource_is(item, "Composition")


def _bdl_12(item: Any, frame: Frame, element: Element) -> bool:
    return _get(item, "type") != "message" or _first_resource_is(item, "MessageHeader")


def _cpt_2(item: Any, frame: Frame, element: Element) -> bool:
    return not isinstance(item, dict) or "value" not in item or "system" in item


def _att_1(item: Any, frame: Frame, element: Element) -> bool:
    return not isinstance(item, dict) or "data" not in item or "contentType" in item


def _org_1(item: Any, frame: Frame, element: Element) -> bool:
    return isinstance(item, dict) and bool(item.get("identifier") or item.get("name"))


def _per_1(item: Any, frame: Frame, element: Element) -> bool | None:
    start, end = _get(item, "start"), _get(item, "end")
    if not isinstance(start, str) or not isinstance(end, str):
        return True
    try:
        low_start, _ = fhirtime.parse_range(start)
        low_end, high_end = fhirtime.parse_range(end)
    except ValueError:
        return True  # a bad date is reported by the format check
    if len(start) == len(end):
        return low_start <= low_end
    return low_start < high_end  # other precisions: only a start after the whole end fails


def _app_1(item: Any, frame: Frame, element: Element) -> bool:
    return isinstance(item, dict) and ("type" in item or "actor" in item)


def _app_2(item: Any, frame: Frame, element: Element) -> bool:
    return not isinstance(item, dict) or ("start" in item) == ("end" in item)


def _app_3(item: Any, frame: Frame, element: Element) -> bool:
    if not isinstance(item, dict) or ("start" in item and "end" in item):
        return True
    return item.get("status") in ("proposed", "cancelled", "waitlist")


def _app_4(item: Any, frame: Frame, element: Element) -> bool:
    if not isinstance(item, dict) or "cancelationReason" not in item:
        return True
    return item.get("status") in ("noshow", "cancelled")


def _always(item: Any, frame: Frame, element: Element) -> bool:
    return True  # txt-1/txt-2: XHTML rules are not checked (see the module docstring)


_DOM_3 = (
    "contained.where((('#'+id in (%resource.descendants().reference | "
    "%resource.descendants().as(canonical) | %resource.descendants().as(uri) | "
    "%resource.descendants().as(url))) or descendants().where(reference = '#').exists() or "
    "descendants().where(as(canonical) = '#').exists() or "
    "descendants().where(as(canonical) = '#').exists()).not()).trace('unmatched', id).empty()"
)
NATIVE: dict[str, Check] = {
    norm("hasValue() or (children().count() > id.count())"): ele_1,
    norm("hasValue() or (children().count() > id.count()) or $this is Parameters"): ele_1,
    norm("extension.exists() != value.exists()"): _ext_1,
    norm("contained.contained.empty()"): _dom_2,
    norm(_DOM_3): _dom_3,
    norm(
        "contained.where(((id.exists() and ('#'+id in (%resource.descendants().reference | "
        "%resource.descendants().as(canonical) | %resource.descendants().as(uri) | "
        "%resource.descendants().as(url)))) or descendants().where(reference = '#').exists() "
        "or descendants().where(as(canonical) = '#').exists() or "
        "descendants().where(as(uri) = '#').exists()).not()).trace('unmatched', id).empty()"
    ): _dom_3,
    norm("contained.meta.versionId.empty() and contained.meta.lastUpdated.empty()"): _dom_4,
    norm("contained.meta.security.empty()"): _dom_5,
    norm("text.`div`.exists()"): _dom_6,
    norm(
        "reference.startsWith('#').not() or (reference.substring(1).trace('url') in "
        "%rootResource.contained.id.trace('ids'))"
    ): _ref_1,
    "htmlChecks()": _always,
    # Bundle, ContactPoint, Attachment, Period, Organization and Appointment: the invariants
    # of the SAS resources, written out for speed (fhirpathpy takes ~0.5 ms each).
    "total.empty() or (type = 'searchset') or (type = 'history')": _bdl_1,
    "entry.search.empty() or (type = 'searchset')": _bdl_2,
    norm(
        "entry.all(request.exists() = (%resource.type = 'batch' or %resource.type = "
        "'transaction' or %resource.type = 'history'))"
    ): _bdl_3,
    norm(
        "entry.all(response.exists() = (%resource.type = 'batch-response' or %resource.type "
        "= 'transaction-response' or %resource.type = 'history'))"
    ): _bdl_4,
    "resource.exists() or request.exists() or response.exists()": _bdl_5,
    norm(
        "(type = 'history') or entry.where(fullUrl.exists()).select(fullUrl&resource.meta."
        "versionId).isDistinct()"
    ): _bdl_7,
    "fullUrl.exists() implies fullUrl.contains('/_history/').not()": _bdl_8,
    norm(
        "type = 'document' implies (identifier.system.exists() and identifier.value.exists())"
    ): _bdl_9,
    "type = 'document' implies (timestamp.hasValue())": _bdl_10,
    "type = 'document' implies entry.first().resource.is(Composition)": _bdl_11,
    "type = 'message' implies entry.first().resource.is(MessageHeader)": _bdl_12,
    "value.empty() or system.exists()": _cpt_2,
    "data.empty() or contentType.exists()": _att_1,
    "(identifier.count() + name.count()) > 0": _org_1,
    "start.hasValue().not() or end.hasValue().not() or (start <= end)": _per_1,
    "type.exists() or actor.exists()": _app_1,
    "start.exists() = end.exists()": _app_2,
    norm(
        "(start.exists() and end.exists()) or (status in ('proposed' | 'cancelled' | 'waitlist'))"
    ): _app_3,
    norm(
        "Appointment.cancelationReason.exists() implies (Appointment.status='noshow' or "
        "Appointment.status='cancelled')"
    ): _app_4,
}
