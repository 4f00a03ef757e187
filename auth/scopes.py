"""SMART on FHIR v1 scopes: ``(patient|user|system)/(Type|*).(read|write|*)``.

https://hl7.org/fhir/smart-app-launch/1.0.0/scopes-and-launch-context.html. A caller's
token may carry them; the access policy (``auth/policy.py``) allows an interaction only when
the caller's role allows it *and*, if the caller has any SMART scope, one of them grants it.
Other scopes (``openid``, ``scope_all``...) are not SMART resource scopes and are ignored
here. ``patient/`` scopes grant nothing: this server holds no patient compartment (the SAS
flows are between systems and professionals), so a patient-context token reads nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Access = Literal["read", "write"]
_SCOPE = re.compile(r"^(patient|user|system)/(\*|[A-Z][A-Za-z]{1,63})\.(read|write|\*)$")


@dataclass(frozen=True, slots=True)
class Scope:
    context: str  # patient, user or system
    res_type: str  # a resource type, or "*" for every type
    access: str  # read, write or "*"

    def grants(self, res_type: str, access: Access) -> bool:
        if self.context == "patient":
            return False
        return self.res_type in ("*", res_type) and self.access in ("*", access)

    def __str__(self) -> str:
        return f"{self.context}/{self.res_type}.{self.access}"


def parse_scope(text: str) -> Scope | None:
    """The SMART scope ``text`` names, or None when it is not one."""
    found = _SCOPE.match(text)
    if found is None:
        return None
    return Scope(found.group(1), found.group(2), found.group(3))


def smart_scopes(texts: Iterable[str]) -> tuple[Scope, ...]:
    """The SMART scopes among a token's scopes, in a stable order."""
    parsed = (parse_scope(t) for t in sorted(set(texts)))
    return tuple(s for s in parsed if s is not None)


def granted(scopes: Iterable[Scope], res_type: str, access: Access) -> bool:
    return any(s.grants(res_type, access) for s in scopes)


def readable_types(scopes: Iterable[Scope], types: Iterable[str]) -> frozenset[str]:
    """Which of ``types`` the scopes let the caller read."""
    listed = tuple(scopes)
    return frozenset(t for t in types if granted(listed, t, "read"))
