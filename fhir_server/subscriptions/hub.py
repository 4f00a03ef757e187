"""This process's websocket subscribers (R4 websocket channel, docs/subscriptions.md):
a connection binds subscription ids, and each matching write of this process pings them
(``ping <id>``) once its transaction commits. Nothing is persisted: a client that was not
connected misses the ping (it searches again when it reconnects)."""

from __future__ import annotations

import asyncio
from collections import defaultdict

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

    def bound(self, sub_id: str) -> int:
        return len(self._bound.get(sub_id, ()))
