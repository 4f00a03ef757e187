"""The roles of the server's clients (docs/design.md, Security): vendor, regulator, platform,
admin.

A role decides what a client's writes must satisfy (``required_profiles``) and what it may
do and see at all (the access policy, ``auth/policy.py``). ``Context.role`` is the one place
the interactions read it. The API gives each request the role of its authenticated caller
(``api/authn.py``: allow-listed certificate, system token, regulator account); with
``FHIR_AUTH=none`` every request acts with ``FHIR_DEFAULT_ROLE``.
"""

from __future__ import annotations

from typing import Literal, get_args

Role = Literal["vendor", "regulator", "platform", "admin"]
ROLES: tuple[str, ...] = get_args(Role)
ANY_ROLE = "*"  # in FHIR_REQUIRED_PROFILES: what every role's writes must satisfy
