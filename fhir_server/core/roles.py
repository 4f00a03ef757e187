"""The roles of the server's clients (docs/design.md, Security): vendor, regulator, platform,
admin.

A role decides what a client's writes must satisfy (``required_profiles``) and, once
authentication exists, what it may do at all. ``Context.role`` is the one place the
interactions read it. Authentication is not built yet: with ``FHIR_AUTH=none`` every request
acts with ``FHIR_DEFAULT_ROLE``; the auth/policy module will give each request the context of
its principal (``interactions.context.Context.acting_as(role)``).
"""

from __future__ import annotations

from typing import Literal, get_args

Role = Literal["vendor", "regulator", "platform", "admin"]
ROLES: tuple[str, ...] = get_args(Role)
ANY_ROLE = "*"  # in FHIR_REQUIRED_PROFILES: what every role's writes must satisfy
