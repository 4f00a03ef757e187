"""The state of one validation: the issues found (``Run``) and the resource being walked
(``Frame``: its container for ``#id`` references, its Bundle for the others).

"Does this resource conform to that profile" (profile discriminators of slicing) needs the
whole validator; the run carries it as a function (``Conforms``) given by the validator, so
this module stays below everything that uses it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from fhir_server.core.errors import Issue
from fhir_server.validation import messages
from fhir_server.validation.references import BundleIndex, contained_by_id


class Conforms(Protocol):
    """True when ``resource`` is valid against the profile ``url`` (``Validator``)."""

    def __call__(
        self, run: Run, resource: dict[str, Any], url: str, bundle: BundleIndex | None, /
    ) -> bool: ...


@dataclass
class Run:
    conforms: Conforms
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
    run: Run
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
        return self.run.conforms(self.run, resource, url, self.bundle)


def claimed(resource: dict[str, Any]) -> list[str]:
    """The profiles a resource claims in ``meta.profile``."""
    meta = resource.get("meta")
    profiles = meta.get("profile") if isinstance(meta, dict) else None
    return [p for p in profiles if isinstance(p, str)] if isinstance(profiles, list) else []


def unique(issues: list[Issue]) -> list[Issue]:
    """Issues without repeats, in order (a resource checked against two profiles that share
    rules reports each problem once)."""
    seen: set[Issue] = set()
    out = []
    for issue in issues:
        if issue not in seen:
            seen.add(issue)
            out.append(issue)
    return out
