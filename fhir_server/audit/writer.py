"""The per-process audit writer: queue access records, store them as AuditEvents in batches.

The HTTP layer hands each access over with ``offer`` (non-blocking) or, when the queue is
full, ``submit``, which waits for room: back-pressure slows the clients down instead of
dropping an event ("without losing events"). A task of this process takes what is queued,
up to ``batch_size`` events or ``interval_ms`` after the first one, builds the AuditEvents
(``events.py``) and their index rows (``index.py``) and stores them in one transaction
through the storage port's create path (``WriteSession.put``: resource, history, index
rows), acting as ``SYSTEM``. No body checks and no referential integrity: the server built
the events (tests check them against R4), and an audited request may name a resource that
does not exist (a 404 is audited too). The writes are not HTTP requests, so they are not
audited themselves. ``close`` (at shutdown, after the last request) writes everything
still queued before it returns. Each server worker has its own writer.

When the database fails, the batch is retried (with growing pauses) until it is stored; the
queue fills meanwhile and back-pressure applies. Only at shutdown does a batch that still
cannot be written after a few tries get given up, and the log says how many events were lost.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import orjson
import structlog

from fhir_server.audit.events import audit_event
from fhir_server.audit.index import Indexer, indexer_for
from fhir_server.audit.record import Access
from fhir_server.core.caller import SYSTEM
from fhir_server.core.fhirtime import format_instant, utcnow
from fhir_server.interactions.context import Context
from fhir_server.storage.port import IndexRows, Stored

log = structlog.get_logger(__name__)

_STOP = None  # queued by ``close``: everything before it is written, then the task ends
_RETRY_PAUSE_MAX = 5.0  # seconds between two tries of a batch the database refused
_TRIES_AT_SHUTDOWN = 3


class AuditWriter:
    def __init__(
        self,
        *,
        source: str,
        batch_size: int = 200,
        interval_ms: int = 200,
        queue_size: int = 10_000,
    ) -> None:
        self.source = source
        self.batch_size = batch_size
        self.interval = interval_ms / 1000
        self._queue: asyncio.Queue[Access | None] = asyncio.Queue(queue_size)
        self._task: asyncio.Task[None] | None = None
        self._ctx: Context | None = None
        self._index: Indexer | None = None
        self._closing = False
        self._last_full_warning = 0.0
        self.written = 0  # events stored by this process
        self.waits = 0  # accesses that waited for room in a full queue
        self.lost = 0  # events given up at shutdown (the database refused them)
        self.received = 0  # accesses queued
        self._progress = asyncio.Event()  # set after every batch

    def start(self, ctx: Context) -> None:
        """Write into ``ctx``'s store, indexed for its registry, times in its zone."""
        self._ctx = ctx
        self._index = indexer_for(ctx.registry)
        self._task = asyncio.create_task(self._run(), name="audit-writer")

    def offer(self, access: Access) -> bool:
        """Queue ``access`` if there is room (the request path's only cost)."""
        try:
            self._queue.put_nowait(access)
        except asyncio.QueueFull:
            return False
        self.received += 1
        return True

    async def submit(self, access: Access) -> None:
        """Queue ``access``, waiting for room when the queue is full (back-pressure)."""
        if self.offer(access):
            return
        self.waits += 1
        now = time.monotonic()
        if now - self._last_full_warning > 10:
            self._last_full_warning = now
            log.warning(
                "audit queue full: requests wait for the audit writer",
                queued=self._queue.qsize(),
                waits=self.waits,
            )
        await self._queue.put(access)
        self.received += 1

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    async def settled(self) -> None:
        """Wait until every access queued so far is written (or given up): for tests and
        tools that read the trail right after making requests."""
        target = self.received
        while self.written + self.lost < target:
            self._progress.clear()
            await self._progress.wait()

    async def close(self) -> None:
        """Write every queued event, then stop (the lifespan's end: no request is left)."""
        if self._task is None:
            return
        self._closing = True
        if not self._task.done():
            await self._queue.put(_STOP)
        await self._task
        self._task = None
        log.info("audit writer stopped", written=self.written, lost=self.lost)

    async def _run(self) -> None:
        stopping = False
        while not stopping:
            batch, stopping = await self._next_batch()
            if batch:
                await self._write(batch)
                self._progress.set()

    async def _next_batch(self) -> tuple[list[Access], bool]:
        """Up to ``batch_size`` accesses: whatever is queued, else what arrives within
        ``interval`` of the first one. True once ``close``'s marker is reached."""
        first = await self._queue.get()
        if first is _STOP:
            return [], True
        batch = [first]
        deadline = asyncio.get_running_loop().time() + self.interval
        while len(batch) < self.batch_size:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                if self._closing:
                    break  # the marker is on its way: no need to wait
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                try:
                    async with asyncio.timeout(remaining):
                        item = await self._queue.get()
                except TimeoutError:
                    break
            if item is _STOP:
                return batch, True
            batch.append(item)
        return batch, False

    def _build(self, access: Access) -> tuple[Stored, IndexRows]:
        ctx, index = self._ctx, self._index
        assert ctx is not None and index is not None, "start() first"
        now = utcnow()
        res_id = str(uuid.uuid4())
        meta = {"versionId": "1", "lastUpdated": format_instant(now, ctx.timezone)}
        event: dict[str, Any] = {"resourceType": "AuditEvent", "id": res_id, "meta": meta}
        event |= audit_event(access, self.source, ctx.timezone)
        content = orjson.dumps(event)
        return Stored("AuditEvent", res_id, 1, now, False, content, "POST"), index(event)

    async def _write(self, batch: list[Access]) -> None:
        ctx = self._ctx
        assert ctx is not None, "start() first"
        events = []
        for access in batch:
            try:
                events.append(self._build(access))
            except Exception:  # a bug in building one event must not stop the trail
                self.lost += 1
                log.exception("audit event could not be built", path=access.path)
        pause = 0.1
        tries = 0
        while True:
            tries += 1
            try:
                async with ctx.store.writing(SYSTEM) as session:
                    for stored, index in events:
                        await session.put(stored, index, None)
            except Exception:
                if self._closing and tries >= _TRIES_AT_SHUTDOWN:
                    self.lost += len(events)
                    log.exception("audit events lost: the database refused them", count=len(events))
                    return
                log.exception("audit events not written yet: retrying", count=len(events))
                await asyncio.sleep(pause)
                pause = min(pause * 2, _RETRY_PAUSE_MAX)
                continue
            self.written += len(events)
            return
