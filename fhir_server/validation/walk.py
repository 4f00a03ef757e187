"""The walk over a resource's JSON: objects, elements, slices, values, extensions.

``Walk`` visits what is inside one resource; nested resources (contained, Bundle entries)
are handed to the ``Nested`` function it is given (``Validator``, which handles resources:
which profiles, how deep). Checks: unknown elements, JSON arrays versus single values,
primitive formats, cardinality (slices included), fixed and pattern values, slicing (open,
closed, ordered, open at end), bindings, invariants, references, and extensions (slices,
definitions looked up by URL, context).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from fhir_server.validation import messages
from fhir_server.validation.bindings import check_binding
from fhir_server.validation.compiled import (
    NOTHING,
    Constraint,
    Element,
    Kids,
    TypeRef,
    matches_fixed,
    matches_pattern,
)
from fhir_server.validation.context import Frame, Run
from fhir_server.validation.primitives import Primitives
from fhir_server.validation.reference_check import check_reference
from fhir_server.validation.snapshot import Compiler
from fhir_server.validation.terminology import Terminology

_ANY_CONTEXT = frozenset({"Element", "Resource", "DomainResource", "BackboneElement"})


class Nested(Protocol):
    """Validate a resource found inside the one walked (``Validator``): ``expected`` type,
    against every ``must`` profile or the best of ``one_of``; ``contained`` ones resolve
    ``#id`` against the container."""

    def __call__(
        self,
        run: Run,
        item: Any,
        at: str,
        frame: Frame,
        *,
        expected: str = "Resource",
        must: Sequence[str] = (),
        one_of: Sequence[str] = (),
        contained: bool = False,
    ) -> None: ...


class Walk:
    def __init__(
        self,
        compiler: Compiler,
        terminology: Terminology,
        primitives: Primitives,
        nested: Nested,
        *,
        best_practice: bool = True,
    ) -> None:
        """``best_practice=False`` drops best-practice warnings (dom-6: no narrative)."""
        self.compiler = compiler
        self.terminology = terminology
        self.primitives = primitives
        self.nested = nested
        self.best_practice = best_practice

    def check_object(
        self,
        run: Run,
        kids: Kids,
        obj: dict[str, Any],
        loc: str,
        frame: Frame,
        owner: str,
        resource: bool = False,
    ) -> None:
        keys = kids.keys
        deferred: tuple[Element, TypeRef, Any] | None = None
        for key, value in obj.items():
            if key[:1] == "_":
                self._sidecar(run, keys, key, value, loc, frame)
                continue
            entry = keys.get(key)
            if entry is None:
                if not (resource and key == "resourceType") and key != "fhir_comments":
                    run.error("structure", f"{loc}.{key}", "unknown-element", name=key)
                continue
            element, type_ref = entry
            if resource and element.name == "contained":
                deferred = (element, type_ref, value)  # after the references that need them
                continue
            self._element(run, element, type_ref, value, loc, frame, owner, obj.get("_" + key))
        if deferred is not None:
            self._element(run, deferred[0], deferred[1], deferred[2], loc, frame, owner, None)
        for element, names in kids.required:
            if any(n in obj or "_" + n in obj for n in names):
                continue
            where = f"{loc}.{element.name}"
            if element.min > 0 or not element.slices:
                run.error(
                    "required", where, "min", name=element.name, min=element.effective_min, count=0
                )
            else:
                for s in element.slices:
                    if s.element.min > 0:
                        run.error(
                            "required",
                            where,
                            "slice-min",
                            name=element.name,
                            slice=s.name,
                            min=s.element.min,
                            count=0,
                        )
        for element, names in kids.choices:
            present = [n for n in names if n in obj]
            if len(present) > 1:
                run.error(
                    "structure", f"{loc}.{element.name}", "choice-many", keys=", ".join(present)
                )

    def _sidecar(
        self,
        run: Run,
        keys: dict[str, tuple[Element, TypeRef]],
        key: str,
        value: Any,
        loc: str,
        frame: Frame,
    ) -> None:
        """``_given``: the id and extensions of primitive values."""
        entry = keys.get(key[1:])
        where = f"{loc}.{key}"
        if entry is None:
            run.error("structure", where, "unknown-element", name=key)
            return
        items = value if isinstance(value, list) else [value]
        base = self.compiler.core("Element")
        kids = self.compiler.kids(base.root, TypeRef("Element")) if base is not None else None
        for i, item in enumerate(items):
            if item is None:
                continue
            at = f"{where}[{i}]" if isinstance(value, list) else where
            if not isinstance(item, dict):
                run.error("structure", at, "not-object", type="Element")
            elif kids is not None:
                self.check_object(run, kids, item, at, frame, "Element")

    def _element(
        self,
        run: Run,
        element: Element,
        type_ref: TypeRef,
        value: Any,
        loc: str,
        frame: Frame,
        owner: str,
        sidecar: Any,
    ) -> None:
        path = f"{loc}.{element.name}"
        if element.choice:
            path += f".ofType({type_ref.code})"
        if element.array:
            if isinstance(value, list):
                items = value
                if not items:
                    run.error("structure", path, "empty-array", name=element.name)
            else:
                run.error("structure", path, "not-array", name=element.name)
                items = [value]
        elif isinstance(value, list):
            run.error("structure", path, "not-single", name=element.name)
            return
        else:
            items = [value]
        count = len(items)
        if count > element.max:
            run.error("structure", path, "max", name=element.name, max=element.max, count=count)
        elif 0 < count < element.min:
            run.error("required", path, "min", name=element.name, min=element.min, count=count)
        indexed = element.array and isinstance(value, list)
        if element.slicing is not None:
            self._sliced(run, element, type_ref, items, path, frame, owner, indexed)
            return
        fast = element.plain and type_ref.primitive
        for i, item in enumerate(items):
            at = f"{path}[{i}]" if indexed else path
            if item is None and isinstance(sidecar, list) and i < len(sidecar) and sidecar[i]:
                continue  # [null] with an extension in the sidecar: allowed
            if fast and item is not None:  # the common case, kept short
                problem = self.primitives.problem(type_ref.code, item)
                if problem is not None:
                    run.error("value", at, problem[0], **problem[1])
                continue
            self._dispatch(run, element, type_ref, item, at, frame, owner, matched=False)

    def _sliced(
        self,
        run: Run,
        element: Element,
        type_ref: TypeRef,
        items: list[Any],
        path: str,
        frame: Frame,
        owner: str,
        indexed: bool,
    ) -> None:
        assert element.slicing is not None
        slices, rules = element.slices, element.slicing.rules
        counts = [0] * len(slices)
        last, unmatched_seen = -1, False
        for i, item in enumerate(items):
            at = f"{path}[{i}]" if indexed else path
            hits = [
                j for j, s in enumerate(slices) if s.matcher is not None and s.matcher(item, frame)
            ]
            if not hits:
                unmatched_seen = True
                if rules == "closed":
                    names = ", ".join(s.name for s in slices)
                    run.error("structure", at, "closed", name=element.name, slices=names)
                self._dispatch(run, element, type_ref, item, at, frame, owner, matched=False)
                continue
            if rules == "openAtEnd" and unmatched_seen:
                run.error("structure", at, "open-at-end", name=element.name)
            if element.slicing.ordered and hits[0] < last:
                run.error(
                    "structure",
                    at,
                    "order",
                    name=element.name,
                    slice=slices[hits[0]].name,
                    previous=slices[last].name,
                )
            last = max(last, hits[0])
            for j in hits:
                counts[j] += 1
                chosen = slices[j].element
                chosen_type = chosen.types[0] if chosen.types else type_ref
                self._dispatch(run, chosen, chosen_type, item, at, frame, owner, matched=True)
        for s, count in zip(slices, counts, strict=True):
            if count < s.element.min:
                run.error(
                    "required",
                    path,
                    "slice-min",
                    name=element.name,
                    slice=s.name,
                    min=s.element.min,
                    count=count,
                )
            elif count > s.element.max:
                run.error(
                    "structure",
                    path,
                    "slice-max",
                    name=element.name,
                    slice=s.name,
                    max=s.element.max,
                    count=count,
                )

    def _dispatch(
        self,
        run: Run,
        element: Element,
        type_ref: TypeRef,
        item: Any,
        at: str,
        frame: Frame,
        owner: str,
        matched: bool,
    ) -> None:
        self._item(run, element, type_ref, item, at, frame, owner)
        if not matched and element.is_extension and type_ref.code == "Extension":
            self._open_extension(run, element, item, at, frame, owner)

    def _item(
        self,
        run: Run,
        element: Element,
        type_ref: TypeRef,
        item: Any,
        at: str,
        frame: Frame,
        owner: str,
    ) -> None:
        if item is None:
            run.error("value", at, "null")
            return
        if element.fixed is not NOTHING and not matches_fixed(item, element.fixed):
            run.error(
                "value",
                at,
                "fixed",
                expected=messages.show(element.fixed),
                found=messages.show(item),
            )
        if element.pattern is not NOTHING and not matches_pattern(item, element.pattern):
            run.error(
                "value",
                at,
                "pattern",
                expected=messages.show(element.pattern),
                found=messages.show(item),
            )
        if type_ref.is_resource:
            if element.name == "contained":
                cid = item.get("id") if isinstance(item, dict) else None
                required = frame.contained_profiles.get(cid, []) if isinstance(cid, str) else []
                self.nested(run, item, at, frame, one_of=required, contained=True)
            else:
                self.nested(
                    run, item, at, frame, expected=type_ref.code, must=list(type_ref.profiles)
                )
            return
        if type_ref.primitive:
            problem = self.primitives.problem(type_ref.code, item)
            if problem is not None:
                run.error("value", at, problem[0], **problem[1])
                return
            limit = element.max_length
            if limit is not None and isinstance(item, str) and len(item) > limit:
                run.error("value", at, "max-length", max=limit, length=len(item))
        else:
            if not isinstance(item, dict):
                run.error("structure", at, "not-object", type=type_ref.code)
                return
            if not item:
                run.error("value", at, "empty-object")
                return
            kids = self.compiler.kids(element, type_ref)
            if kids is not None:
                if not element.children and type_ref.profiles:
                    self._type_profile_known(run, type_ref, at)
                self.check_object(run, kids, item, at, frame, type_ref.code)
            if type_ref.code == "Reference":
                check_reference(run, self.compiler, type_ref, item, at, frame)
        if element.binding is not None:
            check_binding(run, self.terminology, element.binding, type_ref.code, item, at)
        for c in element.constraints:
            self.check_constraint(run, c, item, at, frame, element)

    def _type_profile_known(self, run: Run, type_ref: TypeRef, at: str) -> None:
        if not any(self.compiler.profile(u) is not None for u in type_ref.profiles):
            run.add("warning", "not-found", at, "type-profile-unknown", url=type_ref.profiles[0])

    # -- extensions, references, bindings, invariants -----------------------------------------

    def _open_extension(
        self, run: Run, element: Element, item: Any, at: str, frame: Frame, owner: str
    ) -> None:
        """An extension no slice describes: checked against its definition, found by URL."""
        url = item.get("url") if isinstance(item, dict) else None
        if not isinstance(url, str):
            return
        prof = self.compiler.profile(url)
        if prof is None or prof.type != "Extension":
            if element.name == "modifierExtension":
                run.error("extension", at, "modifier-unknown", url=url)
            else:
                run.add("warning", "extension", at, "ext-unknown", url=url)
            return
        kids = self.compiler.kids(prof.root, TypeRef("Extension"))
        if kids is not None:
            self.check_object(run, kids, item, at, frame, "Extension")
        for c in prof.root.constraints:
            self.check_constraint(run, c, item, at, frame, prof.root)
        where = element.path.rsplit(".", 1)[0]
        contexts = [e for t, e in prof.contexts if t == "element"]
        allowed = (
            not contexts
            or any(t != "element" for t, _ in prof.contexts)
            or where.split(".", 1)[0] not in self.compiler.resource_types  # inside a data type
            or any(e in _ANY_CONTEXT or e in (where, owner) for e in contexts)
        )
        if not allowed:
            run.error(
                "extension", at, "ext-context", url=url, path=where, contexts=", ".join(contexts)
            )

    def check_constraint(
        self, run: Run, c: Constraint, item: Any, at: str, frame: Frame, element: Element
    ) -> None:
        if c.best_practice and not self.best_practice:
            return
        ok = c.check(item, frame, element)
        if ok is True:
            return
        if ok is None:
            run.add(
                "warning",
                "not-supported",
                at,
                "invariant-unevaluable",
                key=c.key,
                expression=c.expression,
            )
            return
        human = c.human_fr if run.lang == "fr" and c.human_fr else c.human
        run.add(c.severity, "invariant", at, "invariant", key=c.key, human=human)
