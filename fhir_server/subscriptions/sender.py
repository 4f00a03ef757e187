"""The rest-hook sender: claims the messages of the channels ``subscription/<id>`` and sends
each to its Subscription's endpoint (R4 rest-hook, docs/subscriptions.md):

- payload empty: ``POST {endpoint}`` with no body (the subscriber then searches);
- payload ``application/fhir+json``: ``PUT {endpoint}/{type}/{id}`` with the resource.

Each message is sent by a task of its own, at most ``concurrency`` at once: a hanging
endpoint holds its own messages (the queue keeps each subscription's order) and one slot
for ``timeout`` seconds, never the other subscriptions. A failure (no answer, an error, any
status but 2xx) is retried after the queue's backoff; the ``failures``-th consecutive one
marks the message failed and sets its Subscription to ``status=error`` (``on_error``, a new
version written by the server); later messages of a Subscription that is not active fail at
once. Headers of the Subscription (its secrets) are sent, never logged."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx
import structlog

from fhir_server.core.fhirtime import utcnow
from fhir_server.delivery.queue import Delivery, Queue
from fhir_server.storage.port import Store
from fhir_server.subscriptions.matcher import Active
from fhir_server.subscriptions.model import CHANNEL_PREFIX, Subscription

log = structlog.get_logger("fhir_server.subscriptions")
OnError = Callable[[str, str], Awaitable[None]]


@dataclass
class RestHookSender:
    queue: Queue
    store: Store
    active: Active
    on_error: OnError
    failures: int = 5
    timeout: float = 5.0
    concurrency: int = 16
    tick: float = 1.0
    rng: random.Random = field(default_factory=random.Random)
    _event: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _task: asyncio.Task[None] | None = field(default=None, init=False)
    _inflight: set[asyncio.Task[None]] = field(default_factory=set, init=False)
    _client: httpx.AsyncClient | None = field(default=None, init=False)
    _stopping: bool = field(default=False, init=False)

    @property
    def lease(self) -> float:
        return 2 * self.timeout + 5

    def wake(self) -> None:
        self._event.set()

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout), follow_redirects=False
            )
        return self._client

    async def subscriptions(self) -> None:
        if self.active.stale():
            async with self.store.reading() as session:
                await self.active.load(session)

    # -- one round: claim what the free slots can take, start a task per message -------

    async def claim_and_start(self) -> int:
        free = self.concurrency - len(self._inflight)
        if free <= 0:
            return 0
        claimed = await self.queue.claim(free, CHANNEL_PREFIX, lease=self.lease)
        if claimed:
            await self.subscriptions()
        for d in claimed:
            task = asyncio.create_task(self.deliver(d), name=f"subscription-{d.id}")
            self._inflight.add(task)
            task.add_done_callback(self._done)
        return len(claimed)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._event.set()  # a slot is free
        if not task.cancelled() and task.exception() is not None:
            log.error("subscription send crashed", error=type(task.exception()).__name__)

    async def run_once(self, rounds: int = 1000) -> None:
        """Send what is due now and wait for it (``deliver --once``, tests)."""
        for _ in range(rounds):
            started = await self.claim_and_start()
            if self._inflight:
                await asyncio.gather(*self._inflight, return_exceptions=True)
            if started == 0:
                break

    async def deliver(self, d: Delivery) -> None:
        try:
            await self._deliver(d)
        except asyncio.CancelledError:  # stopping: given back, due again at once
            await asyncio.shield(self.queue.release(d))
            raise

    async def _deliver(self, d: Delivery) -> None:
        sub_id = d.channel[len(CHANNEL_PREFIX) :]
        sub = self.active.get(sub_id)
        if sub is None:  # created by another process since our last look
            self.active.invalidate()
            await self.subscriptions()
            sub = self.active.get(sub_id)
        if sub is None or sub.channel != "rest-hook" or not sub.live(utcnow()):
            await self.queue.failed(d, "the subscription is not active")
            log.info("subscription notification dropped", subscription=sub_id, delivery=d.id)
            return
        status, error = await self._send(sub, d)
        fields = {"subscription": sub_id, "delivery": d.id, "attempt": d.attempts}
        if error is None:
            await self.queue.sent(d, status)
            log.info("subscription notified", status=status, **fields)
        elif d.attempts >= self.failures:
            await self.queue.failed(d, error, status)
            log.error("subscription failing: status=error", error=error, **fields)
            await self.on_error(sub_id, f"{d.attempts} failed notifications, last: {error}")
            self.active.invalidate()
        else:
            await self.queue.retry(d, error, status)
            log.warning("subscription notification retried", error=error, **fields)

    async def _send(self, sub: Subscription, d: Delivery) -> tuple[int | None, str | None]:
        assert sub.endpoint is not None
        headers = dict(sub.headers)
        if d.body:
            url = f"{sub.endpoint.rstrip('/')}/{d.res_type}/{d.res_id}"
            headers["Content-Type"] = "application/fhir+json"
            method = "PUT"
        else:
            url, method = sub.endpoint, "POST"
        try:
            response = await self.client().request(
                method, url, content=d.body or b"", headers=headers
            )
        except httpx.TimeoutException:
            return None, f"no answer within {self.timeout:g} s"
        except (httpx.HTTPError, OSError) as exc:
            return None, type(exc).__name__
        if 200 <= response.status_code < 300:
            return response.status_code, None
        return response.status_code, f"{method} HTTP {response.status_code}"

    # -- the background loop ------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run_forever(), name="subscriptions")

    async def stop(self) -> None:
        """Stop claiming; sends in flight are cancelled and their messages given back."""
        self._stopping = True
        self._event.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for task in list(self._inflight):
            task.cancel()
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def run_forever(self) -> None:
        log.info("subscriptions sender started", owner=self.queue.owner)
        while not self._stopping:
            self._event.clear()
            try:
                started = await self.claim_and_start()
            except Exception:  # the database away for a moment: try again next tick
                log.exception("subscriptions round failed")
                started = 0
            if started and len(self._inflight) < self.concurrency:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), self.tick * self.rng.uniform(0.8, 1.2))
