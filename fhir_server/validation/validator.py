"""Validate a resource's JSON against compiled profiles; every problem is an ``Issue``.

``Validator.validate(resource)`` checks the resource against each profile it claims in
``meta.profile`` (and any given with ``profiles=``), or against its base R4 definition when
it claims none that is available. Profiles are compiled once (``snapshot.Compiler``); the
walk inside a resource is ``walk.Walk``, which hands nested resources back to ``_nested``
here. This module handles resources: which profiles, nested resources (contained ones
against the profile their reference requires, Bundle entries against their slice's
profile), and "does this resource conform" for profile discriminators (``_conforms``, which
each ``Run`` carries).

Issues carry a FHIRPath ``expression`` with indexes on repeating elements
(``Slot.meta.security[0].code``; a choice is ``Extension.value.ofType(Reference)``) and a
diagnostic in English or French (``lang="fr"``). Validation never raises: an internal failure
becomes an ``exception`` issue.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from fhir_server.core.errors import Issue
from fhir_server.validation.compiled import Profile, TypeRef
from fhir_server.validation.context import Frame, Run, claimed, unique
from fhir_server.validation.packages import Conformance, load_conformance
from fhir_server.validation.primitives import Primitives
from fhir_server.validation.references import BundleIndex
from fhir_server.validation.snapshot import Compiler, Supplements
from fhir_server.validation.supplements import sas_supplements
from fhir_server.validation.terminology import Terminology
from fhir_server.validation.walk import Walk

_MAX_DEPTH = 12  # nested resources (contained, entries): deeper is refused, not recursed


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
        self.terminology = terminology or Terminology(conformance)
        self.compiler = Compiler(conformance, self.terminology, supplements)
        self.primitives = Primitives(conformance)
        self.walk = Walk(
            self.compiler,
            self.terminology,
            self.primitives,
            self._nested,
            best_practice=best_practice,
        )

    @property
    def best_practice(self) -> bool:
        """Best-practice warnings (dom-6: no narrative) on or off."""
        return self.walk.best_practice

    @best_practice.setter
    def best_practice(self, on: bool) -> None:
        self.walk.best_practice = on

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
        run = Run(self._conforms, "fr" if lang.lower().startswith("fr") else "en")
        if isinstance(profiles, str):
            profiles = [profiles]
        try:
            self._top(run, resource, profiles, declared)
        except Exception as exc:  # the validator must answer, whatever the input
            run.error("exception", _root_name(resource), "internal", error=repr(exc)[:300])
        return unique(run.issues)

    # -- resources ---------------------------------------------------------------------------

    def _top(self, run: Run, resource: Any, asked: Sequence[str], declared: bool) -> None:
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
        profiles = claimed(resource) if declared else []
        frame = Frame(resource, resource, run)
        if rtype == "Bundle":
            frame.bundle = BundleIndex.of(resource)
        self._against(run, resource, rtype, rtype, frame, must=list(asked), declared=profiles)

    def _against(
        self,
        run: Run,
        resource: dict[str, Any],
        rtype: str,
        loc: str,
        frame: Frame,
        *,
        must: Sequence[str] = (),
        one_of: Sequence[str] = (),
        declared: Sequence[str] = (),
    ) -> None:
        """Validate against every ``must`` profile, the best of ``one_of`` and every declared
        one; the base definition when none of them is available."""
        chosen: list[Profile] = []
        for url, missing_is_error in [*((u, True) for u in must), *((u, False) for u in declared)]:
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
                trial = Run(
                    self._conforms, run.lang, conforms_cache=run.conforms_cache, depth=run.depth
                )
                self._resource(trial, prof, resource, loc, frame)
                errors = sum(i.severity == "error" for i in trial.issues)
                if best is None or errors < sum(i.severity == "error" for i in best):
                    best = trial.issues
            run.issues.extend(best or ())

    def _resource(
        self, run: Run, prof: Profile, resource: dict[str, Any], loc: str, frame: Frame
    ) -> None:
        kids = self.compiler.kids(prof.root, TypeRef(prof.type))
        frame.contained_profiles = {}
        if kids is not None:
            self.walk.check_object(run, kids, resource, loc, frame, prof.type, resource=True)
        for c in prof.root.constraints:
            self.walk.check_constraint(run, c, resource, loc, frame, prof.root)

    def _nested(
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
                run, item, rtype, at, child, must=must, one_of=one_of, declared=claimed(item)
            )
        finally:
            run.depth -= 1

    def _conforms(
        self, run: Run, resource: dict[str, Any], url: str, bundle: BundleIndex | None
    ) -> bool:
        if url in claimed(resource):
            return True
        key = (id(resource), url)
        if key not in run.conforms_cache:
            run.conforms_cache[key] = False  # recursion guard
            trial = Run(
                self._conforms, run.lang, conforms_cache=run.conforms_cache, depth=run.depth + 1
            )
            prof = self.compiler.profile(url)
            rtype = resource.get("resourceType")
            if prof is not None and prof.type == rtype and trial.depth < _MAX_DEPTH:
                frame = Frame(resource, resource, trial, bundle)
                self._resource(trial, prof, resource, str(rtype), frame)
                run.conforms_cache[key] = not any(i.severity == "error" for i in trial.issues)
        return run.conforms_cache[key]


def _root_name(resource: Any) -> str:
    rtype = resource.get("resourceType") if isinstance(resource, dict) else None
    return rtype if isinstance(rtype, str) else "Resource"
