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


def channel_of(sub_id: str) -> str:
    return f"{CHANNEL_PREFIX}{sub_id}"


def split_criteria(criteria: str) -> tuple[str, list[tuple[str, str]]]:
    """``Type?a=1&b=2`` -> ("Type", [("a", "1"), ("b", "2")])."""
    res_type, _, query = criteria.partition("?")
    return res_type.strip(), parse_qsl(query, keep_blank_values=True)


def role_of(resource: dict[str, Any]) -> str | None:
    for tag in (resource.get("meta") or {}).get("tag") or []:
        if isinstance(tag, dict) and tag.get("system") == ROLE_TAG:
            code = tag.get("code")
            return code if isinstance(code, str) else None
    return None


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

    @property
    def subscriber(self) -> Caller:
        """Who notifications are evaluated for: the subscriber's role and owner."""
        return Caller(role=self.role, client_id=self.owner)

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
        )
