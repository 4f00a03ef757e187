"""Resource -> index rows, computed in the write transaction (one row per search value).

Each parameter type decides what it stores: tokens as (system, code, text), strings both
as given and normalised (lower case, accents removed), dates as UTC ranges, references as
(type, id) or an absolute URL, and ``Location.position`` as latitude/longitude.

Contained resources are not indexed, and a reference to one (``#id``) gives no row. So the
Location that a SAS ``PractitionerRole`` carries inside itself (``location: #ExampleLocation``)
does not make ``PractitionerRole?location=...`` or ``location.address-city=...`` match. That is
the default of FHIR search: results never include contained resources, and no SAS query
searches PractitionerRoles by place (the contained Location reaches the SAS platform inside
the PractitionerRole that ``_include:iterate=Schedule:actor`` returns). R4 does say chained
parameters SHOULD be evaluated inside contained resources. If a client ever needs that, index
each contained resource under its container's ``res_pk`` with a marker; don't resolve ``#id``
at search time.
"""

from __future__ import annotations

import unicodedata
from decimal import Decimal, InvalidOperation
from typing import Any

from fhir_server.core import fhirtime
from fhir_server.search.indexing import composites, watch
from fhir_server.search.registry.expressions import Value, compile_expression
from fhir_server.search.registry.parameters import Registry, SearchParameter
from fhir_server.storage.port import IndexRows

_STRING_PARTS = {
    "HumanName": ("text", "family", "given", "prefix", "suffix"),
    "Address": ("text", "line", "city", "district", "state", "postalCode", "country"),
}


def normalize(text: str) -> str:
    """Lower case without accents: how strings are indexed and searched ("Hélène" = "helene")."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold().strip()


def index_resource(registry: Registry, resource: dict[str, Any]) -> IndexRows:
    res_type = resource["resourceType"]
    rows: IndexRows = {}
    for param in registry.for_type(res_type).values():
        if not param.expression or param.code in ("_id", "_lastUpdated"):
            continue  # _id and _lastUpdated are columns of the resources table
        values = compile_expression(res_type, param.expression)(resource)
        if not values:
            continue
        kind = "special" if param.type == "special" else param.type
        produce = _PRODUCERS.get(kind)
        if produce is None:
            continue
        out = rows.setdefault(kind, [])
        seen: set[tuple[Any, ...]] = set()
        for value in values:
            for row in produce(param, value):
                key = tuple(sorted(row.items()))
                if key not in seen:
                    seen.add(key)
                    out.append({"param": param.code, **row})
    pairs = composites.pair_rows(res_type, rows)
    if pairs:
        rows[composites.KIND] = pairs
    watched = watch.watch_rows(res_type, resource.get("id"), rows)
    if watched:
        rows[watch.KIND] = watched
    return {k: v for k, v in rows.items() if v}


def _token(_p: SearchParameter, value: Value) -> list[dict[str, Any]]:
    v, ftype = value
    if isinstance(v, bool):
        return [{"system": None, "code": "true" if v else "false", "text": None}]
    if isinstance(v, str | int | float):
        return [{"system": None, "code": str(v), "text": None}]
    if not isinstance(v, dict):
        return []
    rows = []
    if "coding" in v or ftype == "CodeableConcept":
        text = v.get("text")
        for coding in v.get("coding", []):
            rows.append(
                {
                    "system": coding.get("system"),
                    "code": coding.get("code"),
                    "text": coding.get("display") or text,
                }
            )
        if not rows and text:
            rows.append({"system": None, "code": None, "text": text})
        return rows
    if ftype == "ContactPoint":
        return [{"system": None, "code": v.get("value"), "text": v.get("system")}]
    # Identifier and Coding both carry system + value/code.
    code = v.get("value", v.get("code"))
    type_text = None
    if isinstance(v.get("type"), dict):
        type_text = v["type"].get("text")
        # :of-type matches on the identifier's type coding: index it as "type|system|code".
        for coding in v["type"].get("coding", []):
            rows.append(
                {
                    "system": f"of-type:{coding.get('system', '')}|{coding.get('code', '')}",
                    "code": code,
                    "text": None,
                }
            )
    rows.append({"system": v.get("system"), "code": code, "text": v.get("display") or type_text})
    return rows


def _strings(v: Any, ftype: str) -> list[str]:
    if isinstance(v, str):
        return [v]
    if not isinstance(v, dict):
        return []
    keys = _STRING_PARTS.get(ftype) or (
        _STRING_PARTS["HumanName"] if "family" in v or "given" in v else _STRING_PARTS["Address"]
    )
    out: list[str] = []
    for key in keys:
        item = v.get(key)
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, list):
            out.extend(x for x in item if isinstance(x, str))
    return out


def _string(_p: SearchParameter, value: Value) -> list[dict[str, Any]]:
    return [{"norm": normalize(s), "value": s} for s in _strings(*value) if s.strip()]


def _date(_p: SearchParameter, value: Value) -> list[dict[str, Any]]:
    v, _ftype = value
    try:
        if isinstance(v, str):
            low, high = fhirtime.parse_range(v)
            return [{"low": low, "high": high}]
        if isinstance(v, dict) and ("start" in v or "end" in v):
            start = fhirtime.parse_range(v["start"])[0] if v.get("start") else None
            end = fhirtime.parse_range(v["end"])[1] if v.get("end") else None
            return [{"low": start, "high": end}]
    except fhirtime.DateValueError:
        return []
    return []


def _reference(_p: SearchParameter, value: Value) -> list[dict[str, Any]]:
    v, _ftype = value
    ref = v.get("reference") if isinstance(v, dict) else v if isinstance(v, str) else None
    if not isinstance(ref, str) or ref.startswith("#"):
        return []
    if "/_history/" in ref:
        ref = ref.split("/_history/")[0]
    parts = ref.rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2][:1].isupper():
        is_absolute = "://" in ref
        return [
            {
                "target_type": parts[-2],
                "target_id": parts[-1],
                "url": ref if is_absolute else None,
            }
        ]
    return [{"target_type": None, "target_id": None, "url": ref}]


def _uri(_p: SearchParameter, value: Value) -> list[dict[str, Any]]:
    v, _ = value
    return [{"value": v}] if isinstance(v, str) else []


def _number(_p: SearchParameter, value: Value) -> list[dict[str, Any]]:
    v, _ = value
    if isinstance(v, bool) or not isinstance(v, int | float):
        return []
    try:
        return [{"value": Decimal(str(v))}]
    except InvalidOperation:
        return []


def _quantity(_p: SearchParameter, value: Value) -> list[dict[str, Any]]:
    v, _ = value
    if not isinstance(v, dict) or not isinstance(v.get("value"), int | float):
        return []
    return [{"value": Decimal(str(v["value"])), "system": v.get("system"), "code": v.get("code")}]


def _geo(_p: SearchParameter, value: Value) -> list[dict[str, Any]]:
    v, _ = value
    if isinstance(v, dict) and isinstance(v.get("latitude"), int | float):
        lon = v.get("longitude")
        if isinstance(lon, int | float):
            return [{"latitude": float(v["latitude"]), "longitude": float(lon)}]
    return []


_PRODUCERS = {
    "token": _token,
    "string": _string,
    "date": _date,
    "reference": _reference,
    "uri": _uri,
    "number": _number,
    "quantity": _quantity,
    "special": _geo,
}
