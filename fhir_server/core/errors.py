"""The one error hierarchy: code raises these, ``api.outcomes`` renders them.

Each error carries a category (which decides the HTTP status) and FHIR issues
(``OperationOutcome.issue``: severity, code from the R4 ``issue-type`` value set,
a human diagnostic and, where known, a FHIRPath ``expression``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar


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


class Incorrect(FhirError):
    """The request is malformed (400)."""


class NotFound(FhirError):
    """Unknown resource, type or route (404)."""


class Gone(FhirError):
    """The resource was deleted (410)."""


class MethodNotAllowed(FhirError):
    """Method not allowed on this path (405)."""


class NotAcceptable(FhirError):
    """The client asks for a format the server does not speak (406)."""


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


class Busy(FhirError):
    """Temporarily unable to serve (503)."""


class Unauthorized(FhirError):
    """No credentials, or credentials that do not hold (401, with ``WWW-Authenticate``)."""


class Forbidden(FhirError):
    """Who the caller is is known, and the access policy refuses the request (403)."""


_E = TypeVar("_E", bound=FhirError)
_E_co = TypeVar("_E_co", bound=FhirError, covariant=True)


class Factory(Protocol[_E_co]):
    """Makes one error of one category holding a single issue.

    ``expression`` is a list or tuple, not any ``Sequence``: a lone string would pass as a
    sequence of one-character expressions.
    """

    def __call__(
        self, diagnostics: str, *, code: str = ..., expression: tuple[str, ...] | list[str] = ()
    ) -> _E_co: ...


def _factory(cls: type[_E], status: int, default_code: str) -> Factory[_E]:
    def make(
        diagnostics: str, *, code: str = default_code, expression: tuple[str, ...] | list[str] = ()
    ) -> _E:
        return cls(issues=[Issue(code, diagnostics, expression=tuple(expression))], status=status)

    return make


incorrect = _factory(Incorrect, 400, "invalid")
not_found = _factory(NotFound, 404, "not-found")
gone = _factory(Gone, 410, "deleted")
method_not_allowed = _factory(MethodNotAllowed, 405, "not-supported")
not_acceptable = _factory(NotAcceptable, 406, "not-supported")
conflict = _factory(Conflict, 409, "conflict")
precondition_failed = _factory(PreconditionFailed, 412, "conflict")
too_large = _factory(TooLarge, 413, "too-costly")
unsupported_media_type = _factory(UnsupportedMediaType, 415, "not-supported")
unprocessable = _factory(Unprocessable, 422, "processing")
busy = _factory(Busy, 503, "transient")
forbidden = _factory(Forbidden, 403, "forbidden")


def unauthorized(diagnostics: str, *, challenge: str, code: str = "login") -> Unauthorized:
    """A 401 whose ``WWW-Authenticate`` header is ``challenge`` (RFC 6750 §3: e.g.
    ``Bearer realm="fhir", error="invalid_token", error_description="..."``)."""
    return Unauthorized(
        issues=[Issue(code, diagnostics)], status=401, headers={"WWW-Authenticate": challenge}
    )


def unprocessable_issues(issues: list[Issue]) -> Unprocessable:
    """A 422 carrying every issue found (validation reports them all at once)."""
    return Unprocessable(issues=issues, status=422)


def incorrect_issues(issues: list[Issue]) -> Incorrect:
    """A 400 carrying every issue found."""
    return Incorrect(issues=issues, status=400)
