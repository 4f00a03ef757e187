"""Validate a resource's JSON against compiled profiles; every problem is an ``Issue``.

``Validator.validate(resource)`` checks the resource against each profile it claims in
``meta.profile`` (and any given with ``profiles=``), or against its base R4 definition when
it claims none that is available. Profiles are compiled once (``snapshot.Compiler``); this
module only walks the JSON. Checks: unknown elements, JSON arrays versus single values,
primitive formats, cardinality (slices included), fixed and pattern values, slicing (open,
closed, ordered, open at end), bindings, invariants, references (target types, aggregation,
contained targets validated against the profile the reference requires), extensions (slices,
definitions looked up by URL, context) and nested resources (contained, Bundle entries).

Issues carry a FHIRPath ``expression`` with indexes on repeating elements
(``Slot.meta.security[0].code``; a choice is ``Extension.value.ofType(Reference)``) and a
diagnostic in English or French (``lang="fr"``). Validation never raises: an internal failure
becomes an ``exception`` issue.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fhir_server.core.errors import Issue
from fhir_server.validation import messages
from fhir_server.validation.compiled import (
    NOTHING,
    Binding,
    Constraint,
    Element,
    Kids,
    Profile,
    TypeRef,
    matches_fixed,
    matches_pattern,
)
from fhir_server.validation.packages import Conformance, load_conformance
from fhir_server.validation.primitives import Primitives
from fhir_server.validation.references import BundleIndex, contained_by_id, reference_type
from fhir_server.validation.snapshot import Compiler, Supplements
from fhir_server.validation.supplements import sas_supplements
from fhir_server.validation.terminology import Expansion, Terminology

_CODE_TYPES = frozenset({"code", "string", "uri", "url", "canonical"})
_ANY_CONTEXT = frozenset({"Element", "Resource", "DomainResource", "BackboneElement"})
_MAX_DEPTH = 12  # nested resources (contained, entries): deeper is refused, not recursed


@dataclass
class _Run:
    validator: Validator
    lang: str
    issues: list[Issue] = field(default_factory=list)
    conforms_cache: dict[tuple[int, str], bool] = field(default_factory=dict)
    depth: int = 0

    def add(self, severity: str, code: str, where: str, msg: str, /, **args: Any) -> None:
        self.issues.append(Issue(code, messages.text(msg, self.lang, **args), severity, (where,)))

    def error(self, code: str, where: str, msg: str, /, **args: Any) -> None:
        self.add("error", code, where, msg, **args)


@dataclass
class Frame:
    """The resource being walked, its container and its Bundle."""

    resource: dict[str, Any]
    root: dict[str, Any]  # %rootResource: the container of a contained resource
    run: _Run
    bundle: BundleIndex | None = None
    contained_profiles: dict[str, list[str]] = field(default_factory=dict)
    _root_contained: dict[str, dict[str, Any]] | None = None

    def root_contained(self) -> dict[str, dict[str, Any]]:
        if self._root_contained is None:
            self._root_contained = contained_by_id(self.root)
        return self._root_contained

    def root_contained_ids(self) -> set[str]:
        return set(self.root_contained())

    def resolve(self, reference: dict[str, Any]) -> dict[str, Any] | None:
        ref = reference.get("reference")
        if not isinstance(ref, str):
            return None
        if ref.startswith("#"):
            return self.root if ref == "#" else self.root_contained().get(ref[1:])
        return self.bundle.lookup(ref) if self.bundle is not None else None

    def conforms(self, resource: dict[str, Any], url: str) -> bool:
        return self.run.validator._conforms(self.run, resource, url, self.bundle)


class Validator:
    """Compiled profiles of a ``Conformance`` index and the walk that checks resources."""

    def __init__(
        self,
        conformance: Conformance,
        *,
        supplements: Supplements | None = None,
        terminology: Terminology | None = None,
        best_practice: bool = True,
    ) -> None:
        """``best_practice=False`` drops best-practice warnings (dom-6: no narrative)."""
        self.conformance = conformance
        self.best_practice = best_practice
        self.terminology = terminology or Terminology(conformance)
        self.compiler = Compiler(conformance, self.terminology, supplements)
        self.primitives = Primitives(conformance)

    @classmethod
    def load(
        cls,
        cache: Path,
        packages: Iterable[Any] = (),
        folders: Iterable[Path] = (),
        *,
        sas_rules: bool = True,
    ) -> Validator:
        """A validator over the packages of a package cache (see ``load_conformance``), with
        the SAS test-kit rules (``supplements``) unless ``sas_rules=False``."""
        conformance = load_conformance(cache, packages, folders)
        return cls(conformance, supplements=sas_supplements() if sas_rules else None)

    def precompile(self, urls: Iterable[str] | None = None) -> list[str]:
        """Compile profiles now (default: every non-core StructureDefinition with a
        snapshot); returns the URLs that compiled."""
        chosen = (
            list(urls)
            if urls is not None
            else [
                u
                for u in self.conformance.urls("StructureDefinition")
                if not u.startswith("http://hl7.org/fhir/StructureDefinition/")
            ]
        )
        done = []
        for url in chosen:
            prof = self.compiler.profile(url)
            if prof is not None:
                self.compiler.kids(prof.root, TypeRef(prof.type))
                done.append(url)
        return done

    def profile(self, url: str) -> Profile | None:
        return self.compiler.profile(url)

    def validate(
        self,
        resource: Any,
        profiles: Sequence[str] = (),
        *,
        lang: str = "en",
        declared: bool = True,
    ) -> list[Issue]:
        """Issues of ``resource`` against ``profiles`` and (``declared``) the profiles it
        claims; against its base definition when none is available. ``lang``: ``fr``
        (or ``fr-FR``...) for French diagnostics, English otherwise."""
        run = _Run(self, "fr" if lang.lower().startswith("fr") else "en")
        try:
            self._top(run, resource, profiles, declared)
        except Exception as exc:  # the validator must answer, whatever the input
            run.error("exception", _root_name(resource), "internal", error=repr(exc)[:300])
        return _unique(run.issues)

    # -- resources ---------------------------------------------------------------------------

    def _top(self, run: _Run, resource: Any, asked: Sequence[str], declared: bool) -> None:
        if not self.conformance.has_core:
            run.error("not-supported", _root_name(resource), "no-core")
            return
        if not isinstance(resource, dict):
            run.error("structure", "Resource", "not-resource")
            return
        rtype = resource.get("resourceType")
        if not isinstance(rtype, str):
            run.error("structure", "Resource", "no-resource-type")
            return
        claimed = _claimed(resource) if declared else []
        frame = Frame(resource, resource, run)
        if rtype == "Bundle":
            frame.bundle = BundleIndex.of(resource)
        self._against(run, resource, rtype, rtype, frame, must=list(asked), claimed=claimed)

    def _against(
        self,
        run: _Run,
        resource: dict[str, Any],
        rtype: str,
        loc: str,
        frame: Frame,
        *,
        must: Sequence[str] = (),
        one_of: Sequence[str] = (),
        claimed: Sequence[str] = (),
    ) -> None:
        """Validate against every ``must`` profile, the best of ``one_of`` and every claimed
        one; the base definition when none of them is available."""
        chosen: list[Profile] = []
        for url, missing_is_error in [*((u, True) for u in must), *((u, False) for u in claimed)]:
            prof = self.compiler.profile(url)
            if prof is None:
                severity = "error" if missing_is_error else "warning"
                run.add(severity, "not-found", loc, "profile-unknown", url=url)
            elif prof.type != rtype:
                run.error(
                    "structure", loc, "profile-type", url=url, expected=prof.type, found=rtype
                )
            elif prof not in chosen:
                chosen.append(prof)
        alternatives = [p for u in one_of if (p := self.compiler.profile(u)) is not None]
        alternatives = [p for p in alternatives if p.type == rtype and p not in chosen]
        if not chosen and not alternatives:
            base = self.compiler.core(rtype)
            if base is None:
                run.error("structure", loc, "unknown-resource-type", type=rtype)
                return
            chosen.append(base)
        for prof in chosen:
            self._resource(run, prof, resource, loc, frame)
        if len(alternatives) == 1:
            self._resource(run, alternatives[0], resource, loc, frame)
        elif alternatives:
            best: list[Issue] | None = None
            for prof in alternatives:
                trial = _Run(self, run.lang, conforms_cache=run.conforms_cache, depth=run.depth)
                self._resource(trial, prof, resource, loc, frame)
                errors = sum(i.severity == "error" for i in trial.issues)
                if best is None or errors < sum(i.severity == "error" for i in best):
                    best = trial.issues
            run.issues.extend(best or ())

    def _resource(
        self, run: _Run, prof: Profile, resource: dict[str, Any], loc: str, frame: Frame
    ) -> None:
        kids = self.compiler.kids(prof.root, TypeRef(prof.type))
        frame.contained_profiles = {}
        if kids is not None:
            self._object(run, kids, resource, loc, frame, prof.type, resource=True)
        for c in prof.root.constraints:
            self._constraint(run, c, resource, loc, frame, prof.root)

    def _nested(
        self,
        run: _Run,
        item: Any,
        at: str,
        frame: Frame,
        *,
        expected: str = "Resource",
        must: Sequence[str] = (),
        one_of: Sequence[str] = (),
        contained: bool = False,
    ) -> None:
        if not isinstance(item, dict):
            run.error("structure", at, "not-resource")
            return
        rtype = item.get("resourceType")
        if not isinstance(rtype, str):
            run.error("structure", at, "no-resource-type")
            return
        if expected != "Resource" and rtype != expected:
            run.error("structure", at, "resource-type", expected=expected, found=rtype)
            return
        if run.depth >= _MAX_DEPTH:
            return
        if contained:
            child = Frame(item, frame.root, run, frame.bundle)
        else:
            child = Frame(item, item, run, frame.bundle)
            if rtype == "Bundle":
                child.bundle = BundleIndex.of(item)
        run.depth += 1
        try:
            self._against(
                run, item, rtype, at, child, must=must, one_of=one_of, claimed=_claimed(item)
            )
        finally:
            run.depth -= 1

    def _conforms(
        self, run: _Run, resource: dict[str, Any], url: str, bundle: BundleIndex | None
    ) -> bool:
        if url in _claimed(resource):
            return True
        key = (id(resource), url)
        if key not in run.conforms_cache:
            run.conforms_cache[key] = False  # recursion guard
            trial = _Run(self, run.lang, conforms_cache=run.conforms_cache, depth=run.depth + 1)
            prof = self.compiler.profile(url)
            rtype = resource.get("resourceType")
            if prof is not None and prof.type == rtype and trial.depth < _MAX_DEPTH:
                frame = Frame(resource, resource, trial, bundle)
                self._resource(trial, prof, resource, str(rtype), frame)
                run.conforms_cache[key] = not any(i.severity == "error" for i in trial.issues)
        return run.conforms_cache[key]

    # -- objects and elements ----------------------------------------------------------------

    def _object(
        self,
        run: _Run,
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
        run: _Run,
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
                self._object(run, kids, item, at, frame, "Element")

    def _element(
        self,
        run: _Run,
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
        run: _Run,
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
        run: _Run,
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
        run: _Run,
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
                self._nested(run, item, at, frame, one_of=required, contained=True)
            else:
                self._nested(
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
                self._object(run, kids, item, at, frame, type_ref.code)
            if type_ref.code == "Reference":
                self._reference(run, type_ref, item, at, frame)
        if element.binding is not None:
            self._binding(run, element.binding, type_ref.code, item, at)
        for c in element.constraints:
            self._constraint(run, c, item, at, frame, element)

    def _type_profile_known(self, run: _Run, type_ref: TypeRef, at: str) -> None:
        if not any(self.compiler.profile(u) is not None for u in type_ref.profiles):
            run.add("warning", "not-found", at, "type-profile-unknown", url=type_ref.profiles[0])

    # -- extensions, references, bindings, invariants -----------------------------------------

    def _open_extension(
        self, run: _Run, element: Element, item: Any, at: str, frame: Frame, owner: str
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
            self._object(run, kids, item, at, frame, "Extension")
        for c in prof.root.constraints:
            self._constraint(run, c, item, at, frame, prof.root)
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

    def _reference(
        self, run: _Run, type_ref: TypeRef, item: dict[str, Any], at: str, frame: Frame
    ) -> None:
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
            wanted = [u for u in type_ref.targets if self.compiler.profile_type(u) == rtype]
            if wanted:
                frame.contained_profiles.setdefault(ref[1:], []).extend(
                    u for u in wanted if self.compiler.profile(u) is not None
                )

    def _binding(self, run: _Run, binding: Binding, code: str, item: Any, at: str) -> None:
        if code not in _CODE_TYPES and code not in ("Coding", "CodeableConcept"):
            return
        expansion = binding.expansion
        if expansion is NOTHING:
            expansion = binding.expansion = self.terminology.expansion(binding.value_set)
        strength, vs = binding.strength, binding.value_set
        if expansion is None:
            if strength in ("required", "extensible"):
                run.add("warning", "not-found", at, "vs-unknown", vs=vs, strength=strength)
            return
        severity = "error" if strength == "required" else "warning"
        if code in _CODE_TYPES:
            if isinstance(item, str) and expansion.has_code(item) is False:
                run.add(
                    severity, "code-invalid", at, "code-plain", code=item, vs=vs, strength=strength
                )
            return
        if code == "Coding":
            if isinstance(item, dict):
                self._coding(run, expansion, item, at, severity, binding)
            return
        codings = item.get("coding") if isinstance(item, dict) else None
        codings = [c for c in codings if isinstance(c, dict)] if isinstance(codings, list) else []
        if not codings:
            if strength == "required":
                run.error("code-invalid", at, "code-missing", vs=vs)
            return
        results = [_coding_result(expansion, c) for c in codings]
        if any(r is None or r == "ok" for r in results):
            return
        if strength != "required" and "code" not in results:
            return  # codes from other systems extend an extensible or preferred binding
        if len(codings) == 1:
            self._coding(run, expansion, codings[0], f"{at}.coding[0]", severity, binding)
        else:
            run.add(severity, "code-invalid", at, "code-none", vs=vs, strength=strength)

    def _coding(
        self,
        run: _Run,
        expansion: Expansion,
        coding: dict[str, Any],
        at: str,
        severity: str,
        binding: Binding,
    ) -> None:
        result = _coding_result(expansion, coding)
        if result == "system" and binding.strength == "required":
            run.add(
                severity,
                "code-invalid",
                f"{at}.system",
                "code-system",
                system=coding.get("system"),
                vs=binding.value_set,
                strength=binding.strength,
                systems=", ".join(expansion.systems) or "-",
            )
        elif result == "code":
            run.add(
                severity,
                "code-invalid",
                f"{at}.code",
                "code-code",
                code=coding.get("code"),
                system=coding.get("system") or "",
                vs=binding.value_set,
                strength=binding.strength,
            )

    def _constraint(
        self, run: _Run, c: Constraint, item: Any, at: str, frame: Frame, element: Element
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


def _coding_result(expansion: Expansion, coding: dict[str, Any]) -> str | None:
    """ "ok", "system" (not in the ValueSet), "code" (system in, code not) or None (unknown)."""
    code, system = coding.get("code"), coding.get("system")
    if not isinstance(code, str):
        return None
    if not isinstance(system, str):
        found = expansion.has_code(code)
        return None if found is None else "ok" if found else "code"
    if not expansion.has_system(system):
        return "system"
    found = expansion.contains(system, code)
    return None if found is None else "ok" if found else "code"


def _claimed(resource: dict[str, Any]) -> list[str]:
    meta = resource.get("meta")
    profiles = meta.get("profile") if isinstance(meta, dict) else None
    return [p for p in profiles if isinstance(p, str)] if isinstance(profiles, list) else []


def _root_name(resource: Any) -> str:
    rtype = resource.get("resourceType") if isinstance(resource, dict) else None
    return rtype if isinstance(rtype, str) else "Resource"


def _unique(issues: list[Issue]) -> list[Issue]:
    seen: set[Issue] = set()
    out = []
    for issue in issues:
        if issue not in seen:
            seen.add(issue)
            out.append(issue)
    return out
