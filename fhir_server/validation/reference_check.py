"""Checking a literal reference: target types, aggregation (contained, referenced, bundled)
and ``Reference.type``; a contained target is queued for the profiles the element allows.

Resolving references (``#id``, Bundle entries) is ``references``; this is the check the walk
runs on every ``Reference`` value.
"""

from __future__ import annotations

from typing import Any

from fhir_server.validation.compiled import TypeRef
from fhir_server.validation.context import Frame, Run
from fhir_server.validation.references import reference_type
from fhir_server.validation.snapshot import Compiler


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
