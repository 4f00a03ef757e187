"""The rest-hook sender: claims the messages of the channels ``subscription/<id>`` and sends
each to its Subscription's endpoint (R4 rest-hook, docs/subscriptions.md):

- payload empty: ``POST {endpoint}`` with no body (the subscriber then searches);
- payload ``application/fhir+json``: ``PUT {endpoint}/{type}/{id}`` with the resource.

Each message is sent by a task of its own, at most ``concurrency`` at once: a hanging
endpoint holds its own messages (the queue keeps each subscription's order) and one slot
for ``timeout`` seconds, never the other subscriptions. The loop, the client, the wake and
the retries at their ``next_attempt`` are ``delivery.loop.SenderLoop``'s.

A failure (no answer, an error, any status but 2xx) is retried after the queue's backoff
and counted against its Subscription (``failures.py``: consecutive failures across its
messages; a success clears the count). The ``failures``-th sets the Subscription to
``status=error`` (``on_error``, a new version written by the server); its message and the
later ones stay queued, held (``HOLD`` seconds at a time), until the client sets it back
to ``requested`` or ``active`` (``resume.py`` makes them due at once). Messages of a
Subscription that is deleted, ``off`` or past its ``end`` are dropped (failed). Headers
of the Subscription (its secrets) are sent, never logged."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import KW_ONLY, dataclass, field
from typing import ClassVar

import httpx
import structlog

from fhir_server.core.fhirtime import utcnow
from fhir_server.delivery.loop import SenderLoop
from fhir_server.delivery.queue import PENDING, SENT, Delivery, Outcome
from fhir_server.storage.port import Store
from fhir_server.subscriptions import failures as counts
from fhir_server.subscriptions.matcher import Active
from fhir_server.subscriptions.model import CHANNEL_PREFIX, Subscription

log = structlog.get_logger("fhir_server.subscriptions")
OnError = Callable[[str, str], Awaitable[None]]
HOLD = 300.0  # seconds a message of a Subscription in error waits before another look


@dataclass
class RestHookSender(SenderLoop):
    store: Store
    active: Active
    on_error: OnError
    _: KW_ONLY
    failures: int = 5
    concurrency: int = 16
    _inflight: set[asyncio.Task[None]] = field(default_factory=set, init=False)

    name: ClassVar[str] = "subscriptions"
    channel_prefix: ClassVar[str] = CHANNEL_PREFIX

    def make_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=httpx.Timeout(self.timeout), follow_redirects=False)

    def busy(self) -> bool:
        return len(self._inflight) >= self.concurrency

    def stop_grace(self) -> float:
        return 0.0  # claims only: the sends in flight are ``drain``'s

    async def drain(self) -> None:
        """Sends in flight are cancelled and their messages given back."""
        for task in list(self._inflight):
            task.cancel()
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)

    async def subscriptions(self) -> None:
        if self.active.stale():
            async with self.store.reading() as session:
                await self.active.load(session)

    def _sub(self, d: Delivery) -> Subscription | None:
        return self.active.get(d.channel[len(CHANNEL_PREFIX) :])

    # -- one round: claim what the free slots can take, start a task per message -------

    async def run_round(self) -> int:
        return await self.claim_and_start()

    async def claim_and_start(self) -> int:
        free = self.concurrency - len(self._inflight)
        if free <= 0:
            return 0
        claimed = await self.queue.claim(free, CHANNEL_PREFIX, lease=self.lease)
        if claimed:
            await self.subscriptions()
            now = utcnow()
            if any((s := self._sub(d)) is None or not s.live(now) for d in claimed):
                # created, resumed or ended in another process since our last look
                self.active.invalidate()
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
        sub = self._sub(d)
        if sub is not None and sub.status == "error":
            await self.queue.release(d, later=HOLD)  # kept for the client's resume
            log.info("subscription notification held", subscription=sub_id, delivery=d.id)
            return
        if sub is None or sub.channel != "rest-hook" or not sub.live(utcnow()):
            await self.queue.failed(d, "the subscription is not active")
            log.info("subscription notification dropped", subscription=sub_id, delivery=d.id)
            return
        status, error = await self._send(sub, d)
        fields = {"subscription": sub_id, "delivery": d.id, "attempt": d.attempts}
        if error is None:
            await self.queue.settle([Outcome(d, SENT, status)], also=[counts.cleared(sub_id)])
            log.info("subscription notified", status=status, **fields)
            return
        failed = await counts.counted(self.store, sub_id, error)
        if failed < self.failures:
            await self.queue.retry(d, error, status)
            log.warning("subscription notification retried", error=error, failures=failed, **fields)
            return
        # held, not lost: sent again once the client resumes the subscription
        held = Outcome(d, PENDING, status, error, later=HOLD)
        await self.queue.settle([held], also=[counts.cleared(sub_id)])
        log.error("subscription failing: status=error", error=error, failures=failed, **fields)
        await self.on_error(sub_id, f"{failed} failed notifications in a row, last: {error}")
        self.active.invalidate()

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
