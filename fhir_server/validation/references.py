"""References inside what is validated: their forms and resolving them (contained resources,
Bundle entries). Checking them is ``reference_check``.

``Reference.reference`` forms (https://hl7.org/fhir/R4/references.html#literal): ``#id``
(contained), ``Type/id`` (relative), ``http://base/Type/id`` (absolute), with or without
``/_history/v``, and ``urn:uuid:...`` (Bundle entries).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

_LITERAL = re.compile(
    r"(?:^|/)(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$"
)


def reference_type(reference: str) -> str | None:
    """The resource type named by a literal reference, when it names one."""
    found = _LITERAL.search(reference)
    return found.group("type") if found else None


def relative(reference: str) -> str | None:
    found = _LITERAL.search(reference)
    return f"{found.group('type')}/{found.group('id')}" if found else None


@dataclass
class BundleIndex:
    """The resources of a Bundle, by ``fullUrl`` and by ``Type/id``."""

    by_url: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_relative: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def of(cls, bundle: dict[str, Any]) -> BundleIndex:
        index = cls()
        entries = bundle.get("entry")
        for entry in entries if isinstance(entries, list) else ():
            if not isinstance(entry, dict) or not isinstance(entry.get("resource"), dict):
                continue
            resource = entry["resource"]
            full_url = entry.get("fullUrl")
            if isinstance(full_url, str):
                index.by_url[full_url] = resource
            rtype, rid = resource.get("resourceType"), resource.get("id")
            if isinstance(rtype, str) and isinstance(rid, str):
                index.by_relative.setdefault(f"{rtype}/{rid}", resource)
        return index

    def lookup(self, reference: str) -> dict[str, Any] | None:
        found = self.by_url.get(reference)
        if found is not None:
            return found
        rel = relative(reference)
        return self.by_relative.get(rel) if rel else None


def contained_by_id(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    value = container.get("contained")
    out: dict[str, dict[str, Any]] = {}
    for item in value if isinstance(value, list) else ():
        if isinstance(item, dict) and isinstance(item.get("id"), str):
            out.setdefault(item["id"], item)
    return out
