"""The one error hierarchy: code raises these, ``api.outcomes`` renders them.

Each error carries a category (which decides the HTTP status) and FHIR issues
(``OperationOutcome.issue``: severity, code from the R4 ``issue-type`` value set,
a human diagnostic and, where known, a FHIRPath ``expression``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Issue:
    code: str
    diagnostics: str
    severity: str = "error"
    expression: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"severity": self.severity, "code": self.code}
        if self.diagnostics:
            out["diagnostics"] = self.diagnostics
        if self.expression:
            out["expression"] = list(self.expression)
        return out


@dataclass
class FhirError(Exception):
    """Base error. ``status`` is the HTTP status the category maps to."""

    issues: list[Issue] = field(default_factory=list)
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return "; ".join(i.diagnostics for i in self.issues) or type(self).__name__


def _one(cls: type[FhirError], status: int, default_code: str) -> Any:
    def make(
        diagnostics: str, *, code: str = default_code, expression: tuple[str, ...] | list[str] = ()
    ) -> FhirError:
        return cls(issues=[Issue(code, diagnostics, expression=tuple(expression))], status=status)

    return make


class Incorrect(FhirError):
    """The request is malformed (400)."""


class NotFound(FhirError):
    """Unknown resource, type or route (404)."""


class Gone(FhirError):
    """The resource was deleted (410)."""


class MethodNotAllowed(FhirError):
    """Method not allowed on this path (405)."""


class Conflict(FhirError):
    """Version or identity conflict (409)."""


class PreconditionFailed(FhirError):
    """``If-Match`` or a conditional interaction's precondition failed (412)."""


class TooLarge(FhirError):
    """Body over the configured limit (413)."""


class UnsupportedMediaType(FhirError):
    """Content-Type the server does not accept (415)."""


class Unprocessable(FhirError):
    """Well-formed but fails FHIR rules (422)."""


class Forbidden(FhirError):
    """Authenticated but not allowed (403)."""


class Busy(FhirError):
    """Temporarily unable to serve (503)."""


incorrect = _one(Incorrect, 400, "invalid")
not_found = _one(NotFound, 404, "not-found")
gone = _one(Gone, 410, "deleted")
method_not_allowed = _one(MethodNotAllowed, 405, "not-supported")
conflict = _one(Conflict, 409, "conflict")
precondition_failed = _one(PreconditionFailed, 412, "conflict")
too_large = _one(TooLarge, 413, "too-costly")
unsupported_media_type = _one(UnsupportedMediaType, 415, "not-supported")
unprocessable = _one(Unprocessable, 422, "processing")
forbidden = _one(Forbidden, 403, "forbidden")
busy = _one(Busy, 503, "transient")


def unprocessable_issues(issues: list[Issue]) -> FhirError:
    return Unprocessable(issues=issues, status=422)


def incorrect_issues(issues: list[Issue]) -> FhirError:
    return Incorrect(issues=issues, status=400)
