"""The puller: claims due sources (a lease in ``pull_sources``), fetches each, ingests its
feeds, then records the outcome. Run inside every ``serve`` process (``start``/``stop``
with the app's lifespan) and by ``fhir-server pull``; however many run on one database, a
source is polled by one of them at a time (``state.PullStates.claim``).

Nothing about a poll is recorded before its whole input is reconciled: a process killed
mid-pull leaves its lease to expire, the source still due and its validators (ETag,
Last-Modified) as they were, so the next holder fetches it again whole. What it had stored
already is whole practitioners (each one's feed is one transaction) and the re-fetch
reconciles to the same result (ingestion is idempotent).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import structlog

from fhir_server.core.caller import SYSTEM, Caller
from fhir_server.ingest.pull.config import PullSource
from fhir_server.ingest.pull.endpoint import Status, retire_endpoint, sync_endpoint
from fhir_server.ingest.pull.fetch import FetchError, Renew, fetch
from fhir_server.ingest.pull.state import PullStates, SourceState
from fhir_server.ingest.reconcile import Vanished
from fhir_server.ingest.run import ingest
from fhir_server.ingest.sources import SourceError, read_rpps_table
from fhir_server.interactions.context import Context
from mappings import registry
from mappings.contract import Mapper, MappingOptions, MappingResult

log = structlog.get_logger(__name__)
OFF_FOR = timedelta(days=3650)  # a disabled source is not due


def process_id() -> str:
    """Who holds a lease: host, pid and a random part (pids are reused after a restart)."""
    return f"{socket.gethostname()[:64]}:{os.getpid()}:{secrets.token_hex(3)}"


class LeaseLost(Exception):
    """Another process took the source (our lease expired): stop, record nothing."""


@dataclass(slots=True)
class PollOutcome:
    source: str
    status: str  # "ingested", "not-modified", "error"
    error: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    slots: int = 0
    requests: int = 0
    seconds: float = 0.0


@dataclass
class _Mapped:
    """A mapping already made (in a worker thread, so that parsing a large feed does not
    hold the server's event loop), handed to ``ingest`` as its mapper."""

    result: MappingResult
    name: str
    description: str

    def map(self, data: bytes, options: MappingOptions) -> MappingResult:
        return self.result


@dataclass
class Puller:
    ctx: Context
    states: PullStates
    sources: Sequence[PullSource]
    max_bytes: int
    max_depth: int = 64
    vanished: Vanished = "delete"
    tick: float = 5.0  # seconds between two looks for due sources
    concurrency: int = 4  # sources polled at once by this process
    lease_margin: float = 30.0  # seconds a lease outlives the step it covers
    owner: str = field(default_factory=process_id)
    rng: random.Random = field(default_factory=random.Random)
    _task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> list[PullSource]:
        return [s for s in self.sources if s.enabled]

    async def prepare(self) -> None:
        """A state row per source; disabled ones pushed out of reach and shown ``off``,
        enabled ones that were disabled due now; the Endpoints of sources removed from the
        file shown ``off``."""
        now = _now()
        await self.states.ensure([s.name for s in self.sources], now)
        await self.states.wake([s.name for s in self.enabled], now, now + OFF_FOR / 2)
        for source in self.sources:
            if not source.enabled:
                await self.states.postpone(source.name, now + OFF_FOR)
                await self._endpoint(source, "off")
        configured = {s.name for s in self.sources}
        for name in set(await self.states.all()) - configured:  # removed from the file
            try:
                await retire_endpoint(self.ctx, name)
            except Exception:  # the freshness view only
                log.exception("pull endpoint not retired", source=name)

    async def run_once(self, only: str | None = None, *, force: bool = False) -> list[PollOutcome]:
        """Poll every source due now (all of them with ``force``; one with ``only``) that no
        other process holds; their outcomes."""
        chosen = [s for s in self.enabled if only is None or s.name == only]
        if force:
            await self.states.make_due([s.name for s in chosen], _now())
        by_name = {s.name: s for s in chosen}
        outcomes: list[PollOutcome] = []
        while True:
            claimed = await self.states.claim(
                {s.name: s.lease_seconds(self.lease_margin) for s in chosen},
                self.owner,
                _now(),
                self.concurrency,
            )
            if not claimed:
                return outcomes
            done = await asyncio.gather(*(self.poll(by_name[c.name], c) for c in claimed))
            outcomes += done
            chosen = [s for s in chosen if s.name not in {o.source for o in done}]

    async def poll(self, source: PullSource, state: SourceState) -> PollOutcome:
        """One poll of a claimed source, recorded whole once done (or failed)."""
        started = time.monotonic()
        now = _now()
        outcome = PollOutcome(source.name, "error")
        mapper = registry.mapper(source.format)
        fetched = None

        lease = timedelta(seconds=source.lease_seconds(self.lease_margin))
        held_until = state.lease_expires or now

        async def renew() -> None:
            """Before a step: extend the lease unless it still covers the step with half the
            margin to spare (most short polls never write it again)."""
            nonlocal held_until
            moment = _now()
            if held_until - moment >= lease - timedelta(seconds=self.lease_margin / 2):
                return
            if not await self.states.renew(source.name, self.owner, moment + lease):
                raise LeaseLost
            held_until = moment + lease

        try:
            async with asyncio.timeout(source.poll_deadline):
                fetched = await fetch(
                    source, state.etag, state.last_modified, self.max_bytes, now, renew
                )
                outcome.requests = fetched.requests
                if fetched.not_modified:
                    outcome.status = "not-modified"
                else:
                    await self._ingest(source, fetched.bodies, mapper, outcome, now, renew)
        except LeaseLost:  # the new holder records its own outcome
            log.warning("pull lease lost: another process took the source", source=source.name)
            outcome.error = "lease lost"
            return outcome
        except asyncio.CancelledError:  # stopping: what was not reconciled is fetched again
            await asyncio.shield(self.states.abandon(source.name, self.owner))
            raise
        except (FetchError, SourceError) as exc:
            outcome.error = str(exc)
        except TimeoutError:
            outcome.error = f"the poll did not end within {source.poll_deadline:g} s"
        except Exception as exc:  # one source's failure never stops the others
            log.exception("pull failed", source=source.name)
            outcome.error = f"internal error: {type(exc).__name__}"
        outcome.seconds = time.monotonic() - started
        finished = _now()
        if outcome.error is None and fetched is not None:
            kept = await self.states.succeeded(
                source.name,
                self.owner,
                now=finished,
                next_due=finished + timedelta(seconds=source.interval),
                etag=fetched.etag,
                last_modified=fetched.last_modified,
                slot_count=None if fetched.not_modified else outcome.slots,
                rejected=outcome.counts.get("rejected", 0),
            )
            status: Status = "active"
        else:
            outcome.status = "error"
            kept = await self.states.failed(
                source.name,
                self.owner,
                now=finished,
                next_due=finished + timedelta(seconds=self.backoff(source, state.failures)),
                error=outcome.error or "failed",
            )
            status = "error"
        if not kept:
            log.warning("pull lease lost: another process took the source", source=source.name)
        # logged with no wait after the record: a poll stopped now is logged as recorded
        log.info(
            "pulled",
            source=source.name,
            format=source.format,
            status=outcome.status,
            error=outcome.error,
            requests=outcome.requests,
            slots=outcome.slots,
            ms=round(outcome.seconds * 1000),
            **outcome.counts,
        )
        await self._endpoint(source, status)
        return outcome

    async def _ingest(
        self,
        source: PullSource,
        bodies: list[tuple[str, bytes]],
        mapper: Mapper,
        outcome: PollOutcome,
        now: datetime,
        renew: Renew,
    ) -> None:
        table = read_rpps_table(source.rpps_table) if source.rpps_table else {}
        who = Caller(role="vendor", client_id=source.owner) if source.owner else SYSTEM
        ctx = self.ctx.acting_for(who)
        totals: dict[str, int] = {}
        slots = 0
        for location, data in bodies:
            options = MappingOptions(
                source=location,
                vendor=source.vendor,
                rpps_table=table,
                booking_url=source.booking_url,
                now=now,
                window_days=source.window_days,
                max_bytes=self.max_bytes,
                max_depth=self.max_depth,
                owner_key=source.owner_key,
            )
            result = await asyncio.to_thread(mapper.map, data, options)
            # the source's slot count: a rejected practitioner's slots are not stored
            slots += sum(len(f.slots) for f in result.feeds if not f.rejected)
            mapped = _Mapped(result, mapper.name, mapper.description)
            await renew()
            report = await ingest(ctx, mapped, data, options, vanished=self.vanished)
            if report.unreadable:
                first = next(f for f in report.findings if f.severity == "error")
                raise FetchError(f"{first.location}: {first.message}")
            for name, count in report.totals().items():
                totals[name] = totals.get(name, 0) + count
        outcome.status, outcome.counts, outcome.slots = "ingested", totals, slots

    def backoff(self, source: PullSource, failures_before: int) -> float:
        """Seconds before the next try after a failure: retry * 2^failures, capped at
        max_backoff, jittered down to half (processes and sources do not retry in step)."""
        delay = min(source.max_backoff, source.retry * 2.0 ** min(failures_before, 30))
        return delay * self.rng.uniform(0.5, 1.0)

    async def _endpoint(self, source: PullSource, status: Status) -> None:
        try:
            await sync_endpoint(self.ctx, source, status)
        except Exception:  # the freshness view only: the poll's outcome is recorded
            log.exception("pull endpoint not written", source=source.name)

    # -- the background loop of a serve process ----------------------------------------

    def start(self) -> None:
        if self._task is None and self.enabled:
            self._task = asyncio.create_task(self.run_forever(), name="pull")

    async def stop(self) -> None:
        """Cancel the loop: a poll in flight is abandoned (its lease expires; the next
        holder re-fetches it), a transaction in flight rolls back."""
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def run_forever(self) -> None:
        try:
            await self.prepare()
        except Exception:
            log.exception("pull sources not prepared; polling anyway")
        log.info("pull started", sources=len(self.enabled), owner=self.owner)
        while True:
            try:
                await self.run_once()
            except Exception:  # the database away for a moment: try again next tick
                log.exception("pull round failed")
            # jittered, so that processes started together do not claim in step
            await asyncio.sleep(self.tick * self.rng.uniform(0.8, 1.2))


def _now() -> datetime:
    return datetime.now(UTC)
