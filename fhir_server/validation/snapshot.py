"""Compile StructureDefinition snapshots into ``compiled.Element`` trees, once each.

``Compiler.profile(url)`` reads the snapshot, builds the tree from the element ids
(``Slot.serviceType:TypeConsultation.coding.system``: slices hang off their base element,
``value[x]:valueReference`` type slices become keys), resolves ``contentReference`` and
attaches slice matchers (``slicing.matcher``). ``Compiler.kids`` tells what the keys of a
JSON object mean under an element: the snapshot's own children, else those of the type's
profile, else those of the base R4 data type, compiled on first use and cached.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from fhir_server.validation import slicing
from fhir_server.validation.compiled import (
    NOTHING,
    SYSTEM_TYPES,
    UNBOUNDED,
    Binding,
    Constraint,
    Element,
    Kids,
    Profile,
    Slice,
    Slicing,
    TypeRef,
)
from fhir_server.validation.invariants import compile_constraint
from fhir_server.validation.packages import CORE_SD, Conformance
from fhir_server.validation.terminology import Terminology

_FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
_STRENGTHS = ("required", "extensible", "preferred")

# Supplementary invariants: profile URL -> [(element path, constraint)].
Supplements = Mapping[str, Sequence[tuple[str, Constraint]]]


def _split_id(element_id: str) -> tuple[str, str]:
    """("Slot.serviceType:TypeConsultation", "coding") — the last dot outside slice names
    that are URLs is the split point; ids without dots are roots."""
    head, dot, last = element_id.rpartition(".")
    return (head, last) if dot else ("", element_id)


def _fixed_and_pattern(raw: dict[str, Any]) -> tuple[Any, Any]:
    fixed: Any = NOTHING
    pattern: Any = NOTHING
    for key, value in raw.items():
        if key.startswith("fixed") and key != "fixed":
            fixed = value
        elif key.startswith("pattern") and key != "pattern":
            pattern = value
    return fixed, pattern


class Compiler:
    """Compiled profiles and data types of one ``Conformance`` index."""

    def __init__(
        self,
        conformance: Conformance,
        terminology: Terminology | None = None,
        supplements: Supplements | None = None,
    ) -> None:
        self.conformance = conformance
        self.terminology = terminology or Terminology(conformance)
        self.supplements = supplements or {}
        self._profiles: dict[str, Profile | None] = {}
        self._building: set[str] = set()
        self._lock = threading.RLock()
        self._resource_types: frozenset[str] | None = None
        self._profile_types: dict[str, str] | None = None

    # -- what types and profiles are ---------------------------------------------------------

    @property
    def resource_types(self) -> frozenset[str]:
        if self._resource_types is None:
            cs = self.conformance.code_system("http://hl7.org/fhir/resource-types")
            codes = {c["code"] for c in (cs or {}).get("concept", ()) if isinstance(c, dict)}
            self._resource_types = frozenset(codes)
        return self._resource_types

    def is_resource_type(self, code: str) -> bool:
        return code == "Resource" or code in self.resource_types

    def profile_type(self, url: str) -> str | None:
        """The resource type a profile constrains, also for profiles that are not loaded
        (FR Core): learnt from the loaded profiles' ``baseDefinition``, else guessed from
        the name (``.../FrPractitionerRoleExercice`` -> ``PractitionerRole``)."""
        url = url.split("|", 1)[0]
        if url.startswith(CORE_SD):
            name = url[len(CORE_SD) :]
            if self.is_resource_type(name):
                return name
        sd = self.conformance.structure_definition(url)
        if sd is not None and isinstance(sd.get("type"), str):
            return str(sd["type"])
        if self._profile_types is None:
            learnt: dict[str, str] = {}
            for other in self.conformance.urls("StructureDefinition"):
                if other.startswith(CORE_SD):
                    continue
                osd = self.conformance.structure_definition(other) or {}
                base, kind = osd.get("baseDefinition"), osd.get("type")
                if isinstance(base, str) and isinstance(kind, str):
                    learnt.setdefault(base, kind)
            self._profile_types = learnt
        if url in self._profile_types:
            return self._profile_types[url]
        name = url.rstrip("/").rsplit("/", 1)[-1]
        name = name[2:] if name.startswith("Fr") else name
        candidates = [t for t in self.resource_types if name.startswith(t)]
        return max(candidates, key=len) if candidates else None

    # -- compiled profiles -------------------------------------------------------------------

    def profile(self, url: str) -> Profile | None:
        found = self._profiles.get(url, NOTHING)
        if found is not NOTHING:
            return found  # type: ignore[return-value]
        with self._lock:  # validations may run in threads: one compiles, others wait
            found = self._profiles.get(url, NOTHING)
            if found is not NOTHING:
                return found  # type: ignore[return-value]
            if url in self._building:
                return None  # a profile that needs itself while compiling
            self._building.add(url)
            try:
                sd = self.conformance.structure_definition(url)
                result = self._compile(sd) if sd is not None else None
            finally:
                self._building.discard(url)
            self._profiles[url] = result
            return result

    def core(self, type_name: str) -> Profile | None:
        return self.profile(CORE_SD + type_name)

    def _compile(self, sd: dict[str, Any]) -> Profile | None:
        raw_elements = (sd.get("snapshot") or {}).get("element")
        if not isinstance(raw_elements, list) or not raw_elements:
            return None
        url = str(sd.get("url"))
        extra: dict[str, list[Constraint]] = {}
        for path, constraint in self.supplements.get(url, ()):
            extra.setdefault(path, []).append(constraint)
        by_id: dict[str, Element] = {}
        by_path: dict[str, Element] = {}
        root: Element | None = None
        for raw in raw_elements:
            if not isinstance(raw, dict) or not isinstance(raw.get("path"), str):
                continue
            element = self._element(raw, extra.get(raw["path"], ()))
            by_id[element.id] = element
            if root is None:
                root = element
                by_path.setdefault(element.path, element)
                continue
            if element.slice_name is None:
                by_path.setdefault(element.path, element)
            self._attach(element, by_id, by_path)
        if root is None:
            return None
        for element in by_id.values():
            self._finish(element, by_path)
        contexts = tuple(
            (str(c.get("type")), str(c.get("expression")))
            for c in sd.get("context") or ()
            if isinstance(c, dict)
        )
        return Profile(
            url=url,
            type=str(sd.get("type")),
            kind=str(sd.get("kind")),
            root=root,
            title=str(sd.get("title") or sd.get("name") or url),
            contexts=contexts,
            derivation=str(sd.get("derivation") or ""),
        )

    def _attach(
        self, element: Element, by_id: dict[str, Element], by_path: dict[str, Element]
    ) -> None:
        parent_id, last = _split_id(element.id)
        if ":" in last:
            base_name, slice_name = last.split(":", 1)
            base = by_id.get(f"{parent_id}.{base_name}" if parent_id else base_name)
            if "/" in slice_name:  # re-slice "a/b": hangs off slice a
                base = by_id.get(f"{parent_id}.{base_name}:{slice_name.split('/')[0]}", base)
            if base is not None:
                base.slices.append(Slice(slice_name, element))
                return
        parent = by_id.get(parent_id)
        if parent is None:  # unusual ids: fall back on the path
            parent = by_path.get(element.path.rpartition(".")[0])
        if parent is None:
            return
        sibling = parent.child(element.name)
        if sibling is None and not element.choice:
            # "Extension.valueReference" (an R3-style renamed choice) is a type slice.
            for c in parent.children:
                if c.choice and element.name.startswith(c.name) and element.types:
                    c.type_slices[element.types[0].code] = element
                    return
        parent.children.append(element)

    def _element(self, raw: dict[str, Any], extra: Sequence[Constraint]) -> Element:
        path = str(raw["path"])
        leaf = path.rsplit(".", 1)[-1]
        choice = leaf.endswith("[x]")
        base: dict[str, Any] = raw["base"] if isinstance(raw.get("base"), dict) else {}
        base_max = str(base.get("max", raw.get("max", "*")))
        max_text = str(raw.get("max", "*"))
        fixed, pattern = _fixed_and_pattern(raw)
        binding = None
        rb = raw.get("binding")
        if isinstance(rb, dict) and rb.get("strength") in _STRENGTHS:
            vs = rb.get("valueSet")
            if isinstance(vs, str):
                binding = Binding(str(rb["strength"]), vs)
        constraints = [c for c in map(compile_constraint, raw.get("constraint") or ()) if c]
        constraints.extend(extra)
        slicing_: Slicing | None = None
        rs = raw.get("slicing")
        if isinstance(rs, dict):
            slicing_ = Slicing(
                tuple(
                    (str(d.get("type")), str(d.get("path")))
                    for d in rs.get("discriminator") or ()
                    if isinstance(d, dict)
                ),
                str(rs.get("rules") or "open"),
                rs.get("ordered") is True,
            )
        ref = raw.get("contentReference")
        max_length = raw.get("maxLength")
        return Element(
            id=str(raw.get("id") or path),
            path=path,
            name=leaf[:-3] if choice else leaf,
            choice=choice,
            min=int(raw.get("min") or 0),
            max=UNBOUNDED if max_text == "*" else int(max_text),
            array=base_max not in ("0", "1"),
            types=self._types(raw.get("type")),
            fixed=fixed,
            pattern=pattern,
            max_length=max_length if isinstance(max_length, int) else None,
            binding=binding,
            constraints=tuple(constraints),
            slicing=slicing_,
            content_ref=ref.split("#", 1)[1] if isinstance(ref, str) and "#" in ref else None,
            slice_name=raw.get("sliceName") if isinstance(raw.get("sliceName"), str) else None,
        )

    def _types(self, raw_types: Any) -> tuple[TypeRef, ...]:
        out = []
        for t in raw_types or ():
            if not isinstance(t, dict) or not isinstance(t.get("code"), str):
                continue
            code = t["code"]
            if code in SYSTEM_TYPES:
                declared = [
                    e.get("valueUrl") or e.get("valueUri")
                    for e in t.get("extension") or ()
                    if isinstance(e, dict) and e.get("url") == _FHIR_TYPE_EXT
                ]
                code = str(declared[0]) if declared and declared[0] else SYSTEM_TYPES[code]
            targets = tuple(str(p) for p in t.get("targetProfile") or ())
            target_types: set[str] = set()
            for target in targets:
                kind = self.profile_type(target)
                if kind == "Resource" or kind is None:
                    target_types = set()  # any type (or unknown: do not reject)
                    break
                target_types.add(kind)
            out.append(
                TypeRef(
                    code=code,
                    profiles=tuple(str(p) for p in t.get("profile") or ()),
                    targets=targets,
                    target_types=frozenset(target_types),
                    aggregation=frozenset(str(a) for a in t.get("aggregation") or ()),
                    is_resource=self.is_resource_type(code),
                )
            )
        return tuple(out)

    def _finish(self, element: Element, by_path: dict[str, Element]) -> None:
        element.plain = (
            element.fixed is NOTHING
            and element.pattern is NOTHING
            and element.binding is None
            and not element.constraints
            and element.max_length is None
        )
        element.is_extension = element.name in ("extension", "modifierExtension") and any(
            t.code == "Extension" for t in element.types
        )
        if element.content_ref and not element.children:
            target = by_path.get(element.content_ref)
            if target is not None:
                element.children = target.children
                element.slicing, element.slices = target.slicing, target.slices
        by_type = element.slicing is not None and all(
            d == ("type", "$this") for d in element.slicing.discriminators
        )
        if element.choice and element.slices and by_type:
            for s in element.slices:
                if s.element.types:
                    element.type_slices[s.element.types[0].code] = s.element
            element.slicing, element.slices = None, []
        if element.slicing is not None:
            for s in element.slices:
                s.matcher = slicing.matcher(self, element, s)

    # -- what the keys of an object mean -----------------------------------------------------

    def kids(self, element: Element, type_ref: TypeRef) -> Kids | None:
        cached = element.kids_cache.get(type_ref.code, NOTHING)
        if cached is not NOTHING:
            return cached  # type: ignore[return-value]
        with self._lock:
            return self._kids(element, type_ref)

    def _kids(self, element: Element, type_ref: TypeRef) -> Kids | None:
        cached = element.kids_cache.get(type_ref.code, NOTHING)
        if cached is not NOTHING:
            return cached  # type: ignore[return-value]
        children = element.children
        if not type_ref.primitive and type_ref.code not in ("BackboneElement", "Element"):
            inherited: list[Element] = []
            for url in type_ref.profiles:
                prof = self.profile(url)
                if prof is not None and prof.root.children:
                    inherited = prof.root.children
                    break
            else:
                core = self.core(type_ref.code)
                inherited = core.root.children if core is not None else []
            if not children:
                children = inherited
            elif inherited:
                # A snapshot that lists only some children (hand-written, or trimmed):
                # the others keep the rules of the type.
                own = {c.name for c in children}
                children = children + [c for c in inherited if c.name not in own]
        result = build_kids(children) if children else None
        element.kids_cache[type_ref.code] = result
        return result


def build_kids(children: list[Element]) -> Kids:
    keys: dict[str, tuple[Element, TypeRef]] = {}
    required: list[tuple[Element, tuple[str, ...]]] = []
    choices: list[tuple[Element, tuple[str, ...]]] = []
    for child in children:
        if child.choice:
            names = []
            for t in child.types:
                key = child.key_for(t.code)
                names.append(key)
                sliced = child.type_slices.get(t.code)
                keys[key] = (sliced, sliced.types[0]) if sliced is not None else (child, t)
            json_keys = tuple(names)
            choices.append((child, json_keys))
        else:
            keys[child.name] = (child, child.types[0] if child.types else TypeRef("Element"))
            json_keys = (child.name,)
        if child.effective_min > 0:
            required.append((child, json_keys))
    return Kids(keys, tuple(required), tuple(choices))
