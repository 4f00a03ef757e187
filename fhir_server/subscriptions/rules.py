"""What a Subscription must be to be stored (``accept``): a 400 OperationOutcome otherwise,
before anything is written. The server sets ``status`` (requested -> active) and records
the subscriber's role (``model.ROLE_TAG``) and the SMART scopes of its token
(``model.SCOPE_TAG``): matching reads as that subscriber, never more. Tags a client sends
under those systems are dropped, not trusted."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from auth.policy import Policy, smart_scopes
from auth.scopes import granted, parse_scope
from fhir_server.core import errors
from fhir_server.core.caller import SYSTEM, Caller
from fhir_server.core.fhirtime import is_instant
from fhir_server.core.types import is_served
from fhir_server.search.execute import Searcher
from fhir_server.search.query.parse import Criterion
from fhir_server.subscriptions.model import (
    ROLE_TAG,
    SCOPE_TAG,
    role_of,
    scopes_of,
    split_criteria,
)

CHANNELS = ("rest-hook", "websocket")
PAYLOADS = ("application/fhir+json",)
STATUSES = ("requested", "active", "off", "error")
NOT_WATCHED = frozenset({"AuditEvent", "Subscription"})  # the audit trail; secrets


@dataclass(frozen=True)
class Rules:
    searcher: Searcher
    policy: Policy
    allowed_hosts: Collection[str] = ()

    def accept(
        self, caller: Caller, resource: dict[str, Any], previous: dict[str, Any] | None
    ) -> dict[str, Any]:
        """The Subscription to store (a copy), or raise ``errors.incorrect``."""
        out = dict(resource)
        self._criteria(caller, out.get("criteria"))
        self._channel(out.get("channel"))
        end = out.get("end")
        if end is not None and not (isinstance(end, str) and is_instant(end)):
            raise errors.incorrect("Subscription.end must be an instant", expression=["end"])
        status = out.get("status")
        if status not in STATUSES:
            raise errors.incorrect(
                f"Subscription.status must be one of {', '.join(STATUSES)}",
                expression=["status"],
            )
        if status == "requested":
            out["status"] = "active"  # accepted: the server activates it at once
        if status in ("requested", "active"):
            out.pop("error", None)  # a client resumes a subscription in error
        role, scopes = self._subscriber(caller, previous)
        out["meta"] = _with_subscriber(out.get("meta"), role, scopes)
        return out

    @staticmethod
    def _subscriber(caller: Caller, previous: dict[str, Any] | None) -> tuple[str, frozenset[str]]:
        """The role and SMART scopes the Subscription is matched with."""
        # the first writer's stay (an admin's or the server's correction keeps them)
        if previous is not None and (caller is SYSTEM or caller.role == "admin"):
            return role_of(previous) or caller.role, scopes_of(previous)
        return caller.role, frozenset(s for s in caller.scopes if parse_scope(s) is not None)

    def _criteria(self, caller: Caller, criteria: Any) -> None:
        if not isinstance(criteria, str) or "?" not in criteria:
            raise errors.incorrect(
                "Subscription.criteria must be a search: Type?parameters",
                expression=["criteria"],
            )
        res_type, pairs = split_criteria(criteria)
        if not is_served(res_type) or res_type in NOT_WATCHED:
            raise errors.incorrect(
                f"Subscription.criteria: resource type {res_type!r} cannot be subscribed to",
                code="not-supported",
                expression=["criteria"],
            )
        # its role, and the SMART scopes of its token: both also limit matching
        allowed = self.policy.may(caller, "search", res_type) if caller is not SYSTEM else None
        if allowed is not None and not allowed:
            raise errors.incorrect(
                f"Subscription.criteria: {allowed.reason}",
                code="not-supported",
                expression=["criteria"],
            )
        if not pairs:
            raise errors.incorrect(
                "Subscription.criteria names no search parameter", expression=["criteria"]
            )
        controls = sorted({name for name, _ in pairs if name.startswith("_") and name != "_id"})
        if controls:
            raise errors.incorrect(
                f"Subscription.criteria: {', '.join(controls)} cannot select notifications",
                code="not-supported",
                expression=["criteria"],
            )
        try:
            query, _ = self.searcher.parse(res_type, pairs, strict=True)
        except errors.FhirError as exc:
            raise errors.incorrect(
                f"Subscription.criteria: {exc}",
                code="not-supported",
                expression=["criteria"],
            ) from exc
        _chains_in_scope(caller, query.criteria)

    def _channel(self, channel: Any) -> None:
        if not isinstance(channel, dict) or channel.get("type") not in CHANNELS:
            raise errors.incorrect(
                f"Subscription.channel.type must be one of {', '.join(CHANNELS)}",
                code="not-supported",
                expression=["channel.type"],
            )
        payload = channel.get("payload")
        if payload not in (None, "", *PAYLOADS):
            raise errors.incorrect(
                "Subscription.channel.payload must be application/fhir+json or absent",
                code="not-supported",
                expression=["channel.payload"],
            )
        for header in channel.get("header") or []:
            if not isinstance(header, str) or ":" not in header or "\n" in header:
                raise errors.incorrect(
                    "Subscription.channel.header: each must be 'Name: value'",
                    expression=["channel.header"],
                )
        if channel["type"] != "rest-hook":
            return
        endpoint = channel.get("endpoint")
        parts = urlsplit(endpoint) if isinstance(endpoint, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise errors.incorrect(
                "Subscription.channel.endpoint of a rest-hook must be an http(s) URL",
                expression=["channel.endpoint"],
            )
        if self.allowed_hosts and parts.hostname not in self.allowed_hosts:
            raise errors.incorrect(
                f"Subscription.channel.endpoint: host {parts.hostname!r} is not allowed"
                " (FHIR_SUBSCRIPTION_ALLOWED_HOSTS)",
                expression=["channel.endpoint"],
            )


def _chains_in_scope(caller: Caller, criteria: Sequence[Criterion]) -> None:
    """A chain (``schedule.actor=…``, ``_has:…``) reads the types it goes through: a token
    with SMART scopes must be able to read each served one (matching would otherwise learn,
    through the chain, what the scopes hide)."""
    scopes = smart_scopes(caller.scopes)
    if not scopes:
        return  # its role alone: the role may read what a chain of its criteria reaches
    for criterion in criteria:
        for link in criterion.path:
            for res_type in link.sources if link.reverse else link.targets:
                if is_served(res_type) and not granted(scopes, res_type, "read"):
                    raise errors.incorrect(
                        f"Subscription.criteria: {criterion.name} reads {res_type} resources,"
                        f" which no SMART scope of the token grants (needs"
                        f" system/{res_type}.read or user/{res_type}.read)",
                        code="not-supported",
                        expression=["criteria"],
                    )


def _with_subscriber(meta: Any, role: str, scopes: frozenset[str]) -> dict[str, Any]:
    out: dict[str, Any] = dict(meta) if isinstance(meta, dict) else {}
    ours = (ROLE_TAG, SCOPE_TAG)
    tags = [
        t for t in out.get("tag") or [] if not (isinstance(t, dict) and t.get("system") in ours)
    ]
    tags.append({"system": ROLE_TAG, "code": role})
    tags.extend({"system": SCOPE_TAG, "code": scope} for scope in sorted(scopes))
    out["tag"] = tags
    return out
