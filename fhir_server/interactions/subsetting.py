"""``_summary`` and ``_elements``: https://hl7.org/fhir/R4/search.html#summary.

A subsetted resource is marked with the ``SUBSETTED`` tag, as the spec requires. Which
elements are "summary" or mandatory comes from the R4 definitions carried by the
``fhir.resources`` models.
"""

from __future__ import annotations

from functools import cache
from typing import Any

SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
}
_ALWAYS = ("resourceType", "id", "meta")


@cache
def _flags(res_type: str) -> tuple[frozenset[str], frozenset[str]]:
    """(summary elements, mandatory elements) of a type, by JSON name."""
    from fhir.resources.R4B import get_fhir_model_class

    summary, mandatory = set(), set()
    for name, field in get_fhir_model_class(res_type).model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        json_name = field.alias or name
        if extra.get("summary_element_property"):
            summary.add(json_name)
        if extra.get("element_required") or field.is_required():
            mandatory.add(json_name)
    return frozenset(summary), frozenset(mandatory)


def _keep(resource: dict[str, Any], names: set[str]) -> dict[str, Any]:
    out = {k: v for k, v in resource.items() if k in names or k.lstrip("_") in names}
    meta = dict(out.get("meta") or {})
    tags = [t for t in meta.get("tag", []) if t.get("code") != "SUBSETTED"]
    meta["tag"] = [*tags, SUBSETTED]
    out["meta"] = meta
    return out


def subset(resource: dict[str, Any], summary: str | None, elements: list[str]) -> dict[str, Any]:
    res_type = str(resource.get("resourceType"))
    summary_names, mandatory = _flags(res_type)
    if summary == "true":
        return _keep(resource, {*_ALWAYS, *summary_names, *mandatory})
    if summary == "text":
        return _keep(resource, {*_ALWAYS, "text", *mandatory})
    if summary == "data":
        return _keep(resource, set(resource) - {"text"})
    if elements:
        # "Type.element" and "element" are both accepted.
        wanted = {e.split(".", 1)[1] if e.startswith(f"{res_type}.") else e for e in elements}
        return _keep(resource, {*_ALWAYS, *mandatory, *wanted})
    return resource
