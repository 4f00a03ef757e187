"""References inside what is validated: resolving them (contained resources, Bundle
entries) and checking them (target types, aggregation).

``Reference.reference`` forms (https://hl7.org/fhir/R4/references.html#literal): ``#id``
(contained), ``Type/id`` (relative), ``http://base/Type/id`` (absolute), with or without
``/_history/v``, and ``urn:uuid:...`` (Bundle entries).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fhir_server.validation.compiled import TypeRef
    from fhir_server.validation.context import Frame, Run
    from fhir_server.validation.snapshot import Compiler

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


def check_reference(
    run: Run, compiler: Compiler, type_ref: TypeRef, item: dict[str, Any], at: str, frame: Frame
) -> None:
    """Target type, aggregation (contained, referenced, bundled) and ``Reference.type`` of
    a literal reference; a contained target is queued for the profiles the element allows."""
    ref = item.get("reference")
    if not isinstance(ref, str):
        return
    target: dict[str, Any] | None
    if ref.startswith("#"):
        mode = "contained"
        target = frame.resolve(item)
        rtype = target.get("resourceType") if target is not None else None
    else:
        target = frame.bundle.lookup(ref) if frame.bundle is not None else None
        mode = "bundled" if target is not None else "referenced"
        rtype = target.get("resourceType") if target is not None else reference_type(ref)
    aggregation = type_ref.aggregation
    if aggregation and mode not in aggregation:
        # A reference to a resource of the same Bundle is also a plain reference.
        if mode == "contained":
            run.error("structure", at, "ref-not-contained", ref=ref)
        elif "referenced" not in aggregation:
            key = "ref-bundled" if "bundled" in aggregation else "ref-contained"
            run.error("structure", at, key, ref=ref)
    if isinstance(rtype, str) and type_ref.target_types and rtype not in type_ref.target_types:
        allowed = " | ".join(sorted(type_ref.target_types))
        run.error("structure", at, "ref-type", found=rtype, allowed=allowed)
    declared = item.get("type")
    if isinstance(declared, str) and isinstance(rtype, str) and declared != rtype:
        run.error("value", f"{at}.type", "ref-type-mismatch", type=declared, ref=ref)
    if mode == "contained" and isinstance(rtype, str) and ref != "#":
        wanted = [u for u in type_ref.targets if compiler.profile_type(u) == rtype]
        if wanted:
            frame.contained_profiles.setdefault(ref[1:], []).extend(
                u for u in wanted if compiler.profile(u) is not None
            )
