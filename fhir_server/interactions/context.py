"""What every interaction receives: the store, the search registry and a few settings.

Built once by ``app.py``; interactions never read settings or globals themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from zoneinfo import ZoneInfo

from auth.policy import Policy
from fhir_server.booking.forwarding import Asked, Forwarder
from fhir_server.core.caller import Caller
from fhir_server.core.roles import Role
from fhir_server.delivery.hooks import WriteHook
from fhir_server.interactions.instants import Remembered
from fhir_server.search.execute import Searcher
from fhir_server.search.registry.parameters import Registry
from fhir_server.storage.port import Store
from fhir_server.subscriptions.rules import Rules
from fhir_server.validation.validator import Validator


@dataclass(frozen=True)
class Context:
    store: Store
    registry: Registry
    timezone: ZoneInfo
    validator: Validator | None = None  # profile validation of writes; None: base R4 only
    # Who the request acts for (core/caller.py): its role decides what its writes must
    # satisfy and, through the access policy, what it may do and see. FHIR_AUTH=none: an
    # anonymous caller of FHIR_DEFAULT_ROLE; otherwise the api layer makes one context per
    # request with ``acting_for``.
    who: Caller = field(default_factory=lambda: Caller(role="admin"))
    # role (or "*") -> resource type -> profile URLs a write must claim and satisfy
    required_profiles: Mapping[str, Mapping[str, tuple[str, ...]]] = field(
        default_factory=dict, hash=False
    )
    # types whose active resources may not share an identifier system|value
    unique_identifiers: frozenset[str] = frozenset()
    # conditional update: a body id that is not the matched (or a free) id is refused as the
    # spec says (400/409) instead of being ignored (docs/api.md)
    strict_conditional_ids: bool = False
    # writes whose relative references name no stored resource are refused (references.py)
    referential_integrity: bool = True
    # how searches run (search/execute.py: page sizes, histories' too; cursor key; cache);
    # None: SQL searches with this context's registry and zone, default page sizes
    searcher: Searcher | None = field(default=None, compare=False, hash=False)
    # called after each version written, in its transaction (delivery/hooks.py): the
    # outboxes (the SAS appointment push, docs/delivery.md)
    write_hooks: tuple[WriteHook, ...] = field(default=(), compare=False, hash=False)
    # what a Subscription must be to be stored (subscriptions/rules.py); None: any R4 one
    subscription_rules: Rules | None = field(default=None, compare=False, hash=False)
    # which stored versions' times need rewriting in search answers (instants.py)
    retimed: Remembered = field(default_factory=Remembered, compare=False, hash=False)
    # books a slot owned by a remote vendor at its owner first (slot_booking.py); None: all ours
    forwarder: Forwarder | None = field(default=None, compare=False, hash=False)
    # per request: what the owners confirmed before its write transaction (owner_first.py)
    asked: Asked | None = field(default=None, compare=False, hash=False)

    @property
    def search(self) -> Searcher:
        """The searcher every search of this context goes through."""
        if self.searcher is not None:
            return self.searcher
        return Searcher(self.registry, self.timezone)

    @property
    def policy(self) -> Policy:
        """The access policy: the store's own object, so reads (the store's ``visible``)
        and the interactions' checks (``access.py``) can never disagree."""
        policy: Policy = self.store.policy
        return policy

    @property
    def caller(self) -> Caller:
        """Who the interactions read and write for, as the storage port carries it."""
        return self.who

    @property
    def role(self) -> Role:
        role: Role = self.who.role  # type: ignore[assignment]
        return role

    def acting_as(self, role: Role) -> Context:
        """The same context for an anonymous client of another role."""
        return replace(self, who=Caller(role=role))

    def acting_for(self, caller: Caller) -> Context:
        """The same context for one authenticated request's caller."""
        return replace(self, who=caller)
