"""What every outbox sender shares (the SAS push, ``sender.py``; the rest-hook
notifications, ``subscriptions/sender.py``): its HTTP client, its wake event, its lease,
the background loop and its stop, and the housekeeping it may run (``retention.py``).

A sender says how it claims and sends (``run_round``), how its client is made
(``make_client``), whether it has room for more (``busy``) and what it does with the sends
still in flight when it stops (``drain``).

The loop runs a round; a round that claimed something is followed by another at once.
Otherwise it sleeps until the first of: a wake (a write of this process committed a
message, a send of this sender ended), the earliest ``next_attempt`` of its pending
messages (a retry comes due: sent on time, not at the next tick), the tick (messages
written by other processes). The sleep is at least ``MIN_WAIT`` (a message that looks due
but that another process holds never makes it spin) and at most the tick, jittered so that
processes started together do not claim in step.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import KW_ONLY, dataclass, field
from typing import ClassVar

import httpx
import structlog

from fhir_server.core.fhirtime import utcnow
from fhir_server.delivery.queue import Queue

log = structlog.get_logger("fhir_server.delivery")
MIN_WAIT = 0.05  # seconds: the shortest sleep between two idle rounds
Housekeeping = Callable[[], Awaitable[object]]


def process_id() -> str:
    """This process's lease name: host, pid and a random part (a restarted pid differs)."""
    return f"{socket.gethostname()[:64]}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass
class SenderLoop:
    queue: Queue
    _: KW_ONLY
    timeout: float = 10.0
    tick: float = 1.0
    rng: random.Random = field(default_factory=random.Random)
    housekeeping: Housekeeping | None = None  # the purge (``retention.py``), or nothing
    housekeeping_every: float = 300.0
    _event: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _task: asyncio.Task[None] | None = field(default=None, init=False)
    _chores: asyncio.Task[None] | None = field(default=None, init=False)
    _next_chores: float = field(default=0.0, init=False)
    _client: httpx.AsyncClient | None = field(default=None, init=False)
    _stopping: bool = field(default=False, init=False)

    name: ClassVar[str] = "sender"
    channel_prefix: ClassVar[str] = ""  # the channels it claims

    # -- what a sender says ----------------------------------------------------------------

    def make_client(self) -> httpx.AsyncClient:
        raise NotImplementedError

    async def run_round(self) -> int:
        """Claim and send (or start sending) what is due; the number claimed."""
        raise NotImplementedError

    def busy(self) -> bool:
        """No room for another claim until a send ends (which wakes the loop)."""
        return False

    def stop_grace(self) -> float:
        """Seconds ``stop`` lets the round in flight end before cancelling it."""
        return self.lease

    async def drain(self) -> None:
        """After the loop ended: what to do with sends still in flight."""

    # -- shared --------------------------------------------------------------------------

    @property
    def lease(self) -> float:
        """Seconds a claim holds: a whole send and its bookkeeping, with room to spare."""
        return 2 * self.timeout + 5

    def wake(self) -> None:
        """A message was committed by this process: send now rather than at the next tick."""
        self._event.set()

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = self.make_client()
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self.run_forever(), name=self.name)

    async def stop(self) -> None:
        """End the loop after the round in flight (within ``stop_grace``; cancelled past
        it), then ``drain`` the sends still in flight and close the client."""
        self._stopping = True
        self._event.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), self.stop_grace())
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None
        if self._chores is not None:
            self._chores.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._chores
            self._chores = None
        await self.drain()
        await self.aclose()

    async def run_forever(self) -> None:
        log.info(f"{self.name} started", owner=self.queue.owner)
        while not self._stopping:
            self._event.clear()  # a wake during the round starts the next one at once
            try:
                claimed = await self.run_round()
                self._housekeep()
                if claimed and not self.busy():
                    continue
                wait = await self.wait_time()
            except Exception:  # the database away for a moment: try again next tick
                log.exception(f"{self.name} round failed")
                wait = self._tick()
            if self._stopping:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), wait)

    async def wait_time(self) -> float:
        """Seconds until the next round (see the module docstring)."""
        tick = self._tick()
        if self.busy():
            return tick  # a send ending wakes the loop
        due = await self.queue.next_due(self.channel_prefix)
        if due is None:
            return tick
        return min(tick, max(MIN_WAIT, (due - utcnow()).total_seconds()))

    def _tick(self) -> float:
        return self.tick * self.rng.uniform(0.8, 1.2)

    def _housekeep(self) -> None:
        """Start the housekeeping in the background when its time has come (one at a time:
        a purge never delays a send)."""
        if self.housekeeping is None or self.housekeeping_every <= 0:
            return
        if self._chores is not None and not self._chores.done():
            return
        now = time.monotonic()
        if now < self._next_chores:
            return
        # jittered: processes started together do not all purge at once
        self._next_chores = now + self.housekeeping_every * self.rng.uniform(0.9, 1.1)
        self._chores = asyncio.create_task(self._run_chores(self.housekeeping))

    async def _run_chores(self, chores: Housekeeping) -> None:
        try:
            await chores()
        except Exception:  # the next one may succeed: never the loop's concern
            log.exception(f"{self.name} housekeeping failed")
