"""This process's websocket subscribers (R4 websocket channel, docs/subscriptions.md):
a connection binds subscription ids, and each matching write pings them (``ping <id>``)
once its transaction commits. On SQLite the write's own process pings its hub after the
commit; on PostgreSQL the write notifies ``CHANNEL`` in its transaction and every process's
listener (``storage/listen.py``) feeds its hub, so a client hears of writes made by any
process. Nothing is persisted: a client that was not connected misses the ping (it
searches again when it reconnects)."""

from __future__ import annotations

import asyncio
from collections import defaultdict

from fhir_server.core.types import is_valid_id

CHANNEL = "fhir_subscription_ping"  # PostgreSQL NOTIFY channel; the payload: a subscription id
QUEUE_SIZE = 1000  # pings waiting for one slow connection; more are dropped
MAX_BINDS = 100  # subscriptions one connection may bind


class Hub:
    def __init__(self) -> None:
        self._bound: dict[str, set[asyncio.Queue[str]]] = defaultdict(set)

    def connection(self) -> asyncio.Queue[str]:
        return asyncio.Queue(QUEUE_SIZE)

    def bind(self, sub_id: str, queue: asyncio.Queue[str]) -> None:
        self._bound[sub_id].add(queue)

    def unbind_all(self, queue: asyncio.Queue[str]) -> None:
        for sub_id in [s for s, queues in self._bound.items() if queue in queues]:
            self._bound[sub_id].discard(queue)
            if not self._bound[sub_id]:
                del self._bound[sub_id]

    def ping(self, sub_id: str) -> None:
        for queue in self._bound.get(sub_id, ()):
            if not queue.full():
                queue.put_nowait(f"ping {sub_id}")

    def notified(self, payload: str) -> None:
        """A notification from another process (or this one): a subscription id."""
        if is_valid_id(payload):
            self.ping(payload)

    def bound(self, sub_id: str) -> int:
        return len(self._bound.get(sub_id, ()))
