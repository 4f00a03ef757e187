"""The write hook matching each written version against the active Subscriptions
(``delivery.hooks.WriteHook``) and queuing a notification per match in the same
transaction (channel ``subscription/<id>``, ordered per subscription).

The active subscriptions are cached per process (``Active``): reloaded when this process
writes a Subscription (after its commit) and at most ``refresh`` seconds after another
process may have. A write of a type no live subscription watches costs nothing more.

A criteria is evaluated by the server's own search, in the write's transaction (its index
rows just written are visible: chains such as ``schedule.actor`` are resolved by SQL
against them), restricted to the written resource (``_id``) and run with the SUBSCRIBER's
visibility (``Scoped``: its role, owner and the SMART scopes of the token that created the
Subscription): a vendor is never notified of a resource it may not read.

A websocket subscription is not queued: its bound clients are pinged after the commit
(``hub.py``), on PostgreSQL through ``NOTIFY`` so that every process's clients hear it."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import orjson
import structlog
from sqlalchemy import ColumnElement, Executable, and_, select
from sqlalchemy.sql import FromClause

from auth.policy import Policy, ReadScope
from fhir_server.core.caller import Caller
from fhir_server.core.fhirtime import utcnow
from fhir_server.delivery.queue import Message, enqueue
from fhir_server.search.execute import Searcher
from fhir_server.storage.access import clause
from fhir_server.storage.listen import notify
from fhir_server.storage.port import ReadSession, Stored, WriteSession
from fhir_server.storage.schema import resources
from fhir_server.subscriptions.hub import CHANNEL
from fhir_server.subscriptions.model import TYPE, Subscription, channel_of

log = structlog.get_logger("fhir_server.subscriptions")
_R = resources.c
_ALL = select(_R.res_id, _R.version, _R.owner, _R.content).where(
    and_(_R.res_type == TYPE, _R.deleted.is_(False))
)


@dataclass
class Active:
    """This process's Subscriptions (every status: the sender reads endpoints here)."""

    refresh: float = 1.0
    _subs: dict[str, Subscription] = field(default_factory=dict)
    _loaded: float = field(default=float("-inf"))

    def invalidate(self) -> None:
        self._loaded = float("-inf")

    def stale(self) -> bool:
        return time.monotonic() - self._loaded > self.refresh

    async def load(self, session: ReadSession) -> dict[str, Subscription]:
        if self.stale():
            started = time.monotonic()
            subs: dict[str, Subscription] = {}
            for row in await session.fetch(_ALL):
                try:
                    resource = orjson.loads(row.content)
                    subs[row.res_id] = Subscription.of(row.res_id, row.version, row.owner, resource)
                except (ValueError, TypeError):  # stored before the rules: never matched
                    log.warning("subscription unreadable", subscription=row.res_id)
            self._subs, self._loaded = subs, started
        return self._subs

    def __len__(self) -> int:
        return len(self._subs)

    def get(self, sub_id: str) -> Subscription | None:
        return self._subs.get(sub_id)


@dataclass
class Scoped:
    """A session's reads as another caller sees them (the subscriber)."""

    session: WriteSession
    caller: Caller
    scope: ReadScope
    dialect: str = ""

    def __post_init__(self) -> None:
        self.dialect = self.session.dialect

    def visible(self, rows: FromClause) -> ColumnElement[bool] | None:
        return clause(self.scope, rows)

    async def fetch(
        self, statement: Executable, params: Mapping[str, Any] | None = None
    ) -> Sequence[Any]:
        return await self.session.fetch(statement, params)


class Matcher:
    """``WriteHook``: notifications of the live subscriptions a version matches."""

    def __init__(
        self,
        searcher: Searcher,
        policy: Policy,
        active: Active,
        wake: Callable[[], None] | None = None,
        ping: Callable[[str], None] | None = None,
    ) -> None:
        self.searcher = replace(searcher, availability=None)  # the agendas lag the write
        self.policy = policy
        self.active = active
        self.wake = wake
        self.ping = ping  # websocket subscriptions: told after the commit, not queued
        # whether this process's hub hears PostgreSQL's notifications now (app.py starts
        # the listener): its own writes' pings come back that way, else they go direct
        self.listening: Callable[[], bool] = _never
        self._needles: dict[tuple[str, int], tuple[tuple[bytes, ...], ...]] = {}

    async def wrote(self, session: WriteSession, stored: Stored, previous: Stored | None) -> None:
        if stored.res_type == TYPE:
            session.after_commit(self.active.invalidate)
            return
        if stored.deleted:
            return  # a deleted resource matches no criteria (docs/subscriptions.md)
        subs = await self.active.load(session)
        now = utcnow()
        watching = [s for s in subs.values() if s.res_type == stored.res_type and s.live(now)]
        content = stored.content.lower() if watching else b""
        for sub in watching:
            if not self.policy.read_scope(sub.subscriber).type_ok(stored.res_type):
                continue  # its role or the scopes of the token that created it hide the type
            if not self.may_match(sub, content):
                continue  # a value the criteria needs is nowhere in the resource
            if await self.matches(session, sub, stored, now):
                await self._notify(session, sub, stored)

    def may_match(self, sub: Subscription, content: bytes) -> bool:
        """The cheap test before the search: each plain token or reference parameter of
        the criteria needs one of its values somewhere in the resource's JSON."""
        key = (sub.id, sub.version)
        needles = self._needles.get(key)
        if needles is None:
            if len(self._needles) > 10_000:
                self._needles.clear()
            needles = self._needles[key] = needles_of(self.searcher, sub)
        return all(any(n in content for n in alternatives) for alternatives in needles)

    async def matches(
        self, session: WriteSession, sub: Subscription, stored: Stored, now: datetime
    ) -> bool:
        who = sub.subscriber
        scoped = Scoped(session, who, self.policy.read_scope(who))
        pairs = [*sub.pairs, ("_id", stored.res_id), ("_total", "none")]
        page = await self.searcher.execute(scoped, stored.res_type, pairs, now=now)
        return bool(page.matches)

    async def _notify(self, session: WriteSession, sub: Subscription, stored: Stored) -> None:
        if sub.channel == "websocket":
            await self._ping(session, sub.id)
            return
        await enqueue(
            session,
            Message(
                channel=channel_of(sub.id),
                key=sub.id,  # one subscription's notifications in order
                body=stored.content if sub.payload else None,
                res_type=stored.res_type,
                res_id=stored.res_id,
                version=stored.version,
            ),
        )
        if self.wake is not None:
            session.after_commit(self.wake)

    async def _ping(self, session: WriteSession, sub_id: str) -> None:
        """The websocket clients bound to ``sub_id``, in every process, after the commit."""
        shared = session.dialect == "postgresql"
        if shared:  # delivered at commit to each process's listener (its hub), this one too
            await notify(session, CHANNEL, sub_id)
        if self.ping is not None and not (shared and self.listening()):
            ping = self.ping
            session.after_commit(lambda: ping(sub_id))


def _never() -> bool:
    return False


def needles_of(searcher: Searcher, sub: Subscription) -> tuple[tuple[bytes, ...], ...]:
    """Per plain token/reference parameter (no modifier, no chain), the lowercased bytes
    one of which the resource's JSON must contain to match; other parameters add nothing
    (the search decides). Conservative: a value that could be written differently in the
    resource (a full URL, an escaped character) is not required."""
    out: list[tuple[bytes, ...]] = []
    for name, value in sub.pairs:
        if ":" in name or "." in name or name.startswith("_"):
            continue
        param = searcher.registry.get(sub.res_type, name)
        if param is None or param.type not in ("token", "reference"):
            continue
        alternatives: list[bytes] = []
        for alt in value.split(","):
            needle = alt.rsplit("|", 1)[-1] if param.type == "token" else alt
            if not needle or "://" in needle or any(c in needle for c in '"\\'):
                alternatives = []
                break
            alternatives.append(needle.lower().encode())
        if alternatives:
            out.append(tuple(alternatives))
    return tuple(out)
