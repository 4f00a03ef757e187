"""A stored Subscription as the server uses it (``Subscription.of``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from fhir_server.core.caller import Caller
from fhir_server.core.fhirtime import parse_instant

TYPE = "Subscription"
CHANNEL_PREFIX = "subscription/"
# the server records the subscriber's role here (meta.tag), never the client
ROLE_TAG = "urn:fhir-server:subscriber-role"
# and, one tag each, the SMART scopes of the token that created it (none: its role decides)
SCOPE_TAG = "urn:fhir-server:subscriber-scope"


def channel_of(sub_id: str) -> str:
    return f"{CHANNEL_PREFIX}{sub_id}"


def split_criteria(criteria: str) -> tuple[str, list[tuple[str, str]]]:
    """``Type?a=1&b=2`` -> ("Type", [("a", "1"), ("b", "2")])."""
    res_type, _, query = criteria.partition("?")
    return res_type.strip(), parse_qsl(query, keep_blank_values=True)


def _codes(resource: dict[str, Any], system: str) -> list[str]:
    meta = resource.get("meta")
    tags = meta.get("tag") if isinstance(meta, dict) else None
    return [
        t["code"]
        for t in tags or []
        if isinstance(t, dict) and t.get("system") == system and isinstance(t.get("code"), str)
    ]


def role_of(resource: dict[str, Any]) -> str | None:
    codes = _codes(resource, ROLE_TAG)
    return codes[0] if codes else None


def scopes_of(resource: dict[str, Any]) -> frozenset[str]:
    """The scopes the server recorded (``SCOPE_TAG``) when the Subscription was stored."""
    return frozenset(_codes(resource, SCOPE_TAG))


@dataclass(frozen=True, slots=True)
class Subscription:
    id: str
    version: int
    owner: str | None
    role: str
    status: str
    res_type: str
    pairs: tuple[tuple[str, str], ...]
    channel: str  # rest-hook or websocket
    endpoint: str | None
    payload: str | None  # None: empty notifications
    headers: tuple[tuple[str, str], ...]
    end: datetime | None
    scopes: frozenset[str] = frozenset()  # the creating token's SMART scopes (SCOPE_TAG)

    @property
    def subscriber(self) -> Caller:
        """Who notifications are evaluated for: the subscriber's role and owner, limited by
        the SMART scopes of the token that created the Subscription."""
        return Caller(role=self.role, client_id=self.owner, scopes=self.scopes)

    def live(self, now: datetime) -> bool:
        return self.status == "active" and (self.end is None or self.end > now)

    @classmethod
    def of(
        cls, res_id: str, version: int, owner: str | None, resource: dict[str, Any]
    ) -> Subscription:
        channel = resource.get("channel") or {}
        res_type, pairs = split_criteria(str(resource.get("criteria") or ""))
        headers: list[tuple[str, str]] = []
        for line in channel.get("header") or []:
            name, sep, value = str(line).partition(":")
            if sep:
                headers.append((name.strip(), value.strip()))
        end_text = resource.get("end") or None
        end = parse_instant(end_text) if isinstance(end_text, str) else None
        return cls(
            id=res_id,
            version=version,
            owner=owner,
            role=role_of(resource) or "admin",
            status=str(resource.get("status") or ""),
            res_type=res_type,
            pairs=tuple(pairs),
            channel=str(channel.get("type") or ""),
            endpoint=channel.get("endpoint"),
            payload=channel.get("payload") or None,
            headers=tuple(headers),
            end=end,
            scopes=scopes_of(resource),
        )
