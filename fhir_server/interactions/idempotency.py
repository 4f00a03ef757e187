"""``Idempotency-Key`` on create: a retried POST returns the first result, never a second
resource (docs/booking.md).

The key is claimed in the write transaction of the create, before anything else is read
(``WriteSession.claim_key``): a concurrent request with the same key waits for the first
one, then replays what it recorded. The record is written in the same transaction as the
created version, so a failed request records nothing and its retry runs again. Keys are
per client: two clients may use the same key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson

from fhir_server.core import errors
from fhir_server.core.fhirtime import utcnow
from fhir_server.delivery.retention import Target
from fhir_server.interactions.context import Context
from fhir_server.storage.port import KeyRecord, Stored, WriteSession
from fhir_server.storage.schema import idempotency_keys

MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class IdempotentRequest:
    key: str
    request_hash: str
    lifetime: timedelta  # a key older than this is forgotten: the request runs again


def request_of(
    key: str, res_type: str, body: Any, if_none_exist: str | None, lifetime: timedelta
) -> IdempotentRequest:
    """The key checked (400 when unusable) with the hash of what the request asks: the
    type, the conditional header and the body (its JSON, key order aside)."""
    if not key or len(key) > MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
        raise errors.incorrect(
            f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} printable ASCII characters",
            code="value",
        )
    canonical = orjson.dumps(
        {"type": res_type, "if-none-exist": if_none_exist, "body": body},
        option=orjson.OPT_SORT_KEYS,
    )
    return IdempotentRequest(key, hashlib.sha256(canonical).hexdigest(), lifetime)


def _client(ctx: Context) -> str:
    return ctx.caller.client_id or ""


async def claim(
    ctx: Context, session: WriteSession, request: IdempotentRequest
) -> KeyRecord | None:
    """None: the key is this request's; otherwise the first request's record (422 when that
    request asked something else)."""
    now = utcnow()
    record = await session.claim_key(
        _client(ctx), request.key, request.request_hash, now, now - request.lifetime
    )
    if record is not None and record.request_hash != request.request_hash:
        raise errors.unprocessable(
            "this Idempotency-Key was used for another request: use a new key for a new request",
            code="business-rule",
        )
    return record


async def record(
    ctx: Context, session: WriteSession, request: IdempotentRequest, status: int, stored: Stored
) -> None:
    await session.record_key(_client(ctx), request.key, status, stored)


async def replayed(ctx: Context, first: KeyRecord) -> Stored:
    """The version the first request answered with."""
    assert first.res_type and first.res_id and first.version  # recorded with the key
    stored = await ctx.store.vread(first.res_type, first.res_id, first.version, ctx.caller)
    if stored is None:  # removed since (an admin's deletion keeps versions: not expected)
        raise errors.gone(f"{first.res_type}/{first.res_id} is no longer available")
    return stored


def expired_keys(lifetime: timedelta, now: datetime) -> Target:
    """The purge's target (``delivery/retention.py``): records older than ``lifetime``, which
    ``claim`` ignores already (a retry after that runs again, as a new request)."""
    c = idempotency_keys.c
    return Target("idempotency keys", idempotency_keys, c.created < now - lifetime)
