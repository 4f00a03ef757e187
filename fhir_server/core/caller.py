"""Who a read or a write is done for, carried from the interaction down to the storage.

The storage port takes a ``Caller`` on every read and write (``storage/port.py``) so that an
access policy can limit the rows a caller sees where the rows are selected, once, instead of
in each interaction; the policy is ``auth/policy.py`` (docs/design.md, Security).
Authentication builds one per request (who, with which role); with ``FHIR_AUTH=none`` a
request is an anonymous caller of ``FHIR_DEFAULT_ROLE``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Caller:
    role: str  # one of interactions/roles.py's roles
    client_id: str | None = None  # the calling software (OAuth client, API key), if known
    user_id: str | None = None  # the person (national id: RPPS, ADELI...), if known
    # What the credentials grant beyond the role (e.g. SMART scopes), for the policy to read
    scopes: frozenset[str] = frozenset()


# The server's own work (start-up preload, reindexing, loading files): sees everything and
# owns nothing (what it writes has no owner; the access policy does not apply to it). Also
# the default of the storage port's methods; interactions always pass their request's caller.
SYSTEM = Caller(role="admin", client_id="fhir-server")
