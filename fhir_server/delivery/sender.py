"""The SAS sender: claims the messages of channel ``sas`` and sends them over mTLS.

Inside every ``serve`` process (``FHIR_DELIVERY_IN_SERVE``) and as ``fhir-server deliver``.
A round claims up to ``batch`` due messages (one per appointment at most: the queue keeps
each appointment's order) and sends them at once; the loop (``loop.SenderLoop``) runs the
rounds: at once when a write of this process wakes it, when a retry's ``next_attempt``
comes, or at the ``tick`` (messages written by other processes).

What counts as what (docs/delivery.md):
- 2xx: sent.
- connection or TLS errors, no answer within ``timeout``, 408, 429, 5xx: retried after a
  backoff (``queue.Backoff``), without bound.
- any other status (400, 401, 403, 404, 409, 422, a redirect…): ``failed``, never sent
  again, reported in ``$delivery-status``.

Method: the message says ``POST`` (the platform's first version) or ``PUT
/Appointment?identifier=``. A POST tried before may have reached the platform (no answer,
a process killed after sending): its next attempts are sent as the conditional ``PUT``,
which creates the appointment when absent and never duplicates it.

Logs name the message (id, key, version), the status and the error, never a body, a key
or a certificate.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import KW_ONLY, dataclass
from pathlib import Path
from typing import Any, ClassVar

import httpx
import orjson

from fhir_server.delivery.loop import SenderLoop, log, process_id
from fhir_server.delivery.queue import FAILED, PENDING, SENT, Delivery, Outcome
from fhir_server.delivery.sas import CHANNEL

RETRIED_STATUSES = frozenset({408, 429})
MAX_ROUNDS = 10_000  # ``run_once``: rounds before it stops, whatever is left

__all__ = ["MAX_ROUNDS", "Round", "SasSender", "SasTarget", "process_id"]


@dataclass(frozen=True, slots=True)
class SasTarget:
    """Where and how to reach the platform (FHIR_SAS_*)."""

    url: str
    client_cert: Path | None = None
    client_key: Path | None = None
    ca_file: Path | None = None

    def tls(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.client_cert is not None:
            key = str(self.client_key) if self.client_key else None
            context.load_cert_chain(str(self.client_cert), key)
        return context


@dataclass
class Round:
    claimed: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0

    def add(self, other: Round) -> None:
        self.claimed += other.claimed
        self.sent += other.sent
        self.retried += other.retried
        self.failed += other.failed


@dataclass
class SasSender(SenderLoop):
    target: SasTarget
    _: KW_ONLY
    batch: int = 32

    name: ClassVar[str] = "delivery"
    channel_prefix: ClassVar[str] = CHANNEL

    def make_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            verify=self.target.tls(),
            timeout=httpx.Timeout(self.timeout),
            follow_redirects=False,  # a redirect elsewhere must not get our certificate
            headers={"Accept": "application/fhir+json", "Content-Type": "application/fhir+json"},
        )

    async def run_round(self) -> int:
        return (await self.send_due()).claimed

    # -- one round, and the rounds of ``deliver --once`` ----------------------------------

    async def send_due(self) -> Round:
        """Claim the due messages (up to ``batch``), send them at once, and record their
        outcomes in one transaction."""
        try:
            client = self.client()
        except (OSError, ssl.SSLError) as exc:  # nothing claimed: messages stay due
            log.error("delivery tls setup failed", error=type(exc).__name__)
            return Round()
        claimed = await self.queue.claim(self.batch, CHANNEL, lease=self.lease)
        if not claimed:
            return Round()
        started = time.perf_counter()
        try:
            outcomes = await asyncio.gather(*(self._send(client, d) for d in claimed))
        except asyncio.CancelledError:  # stopping: untried, due again at once
            untried = [Outcome(d, PENDING, untried=True) for d in claimed]
            await asyncio.shield(self.queue.settle(untried))
            raise
        kept = await self.queue.settle(outcomes)
        done = Round(claimed=len(claimed))
        ms = round((time.perf_counter() - started) * 1000, 1)
        for outcome, held in zip(outcomes, kept, strict=True):
            self._log(outcome, held, ms)
            if outcome.state == SENT:
                done.sent += 1
            elif outcome.state == FAILED:
                done.failed += 1
            else:
                done.retried += 1
        return done

    async def run_once(self, rounds: int = MAX_ROUNDS) -> Round:
        """Send until nothing is due now (retries waiting for their backoff stay queued)."""
        total = Round()
        for _ in range(rounds):
            done = await self.send_due()
            total.add(done)
            if done.claimed == 0:
                break
        return total

    @staticmethod
    def _log(outcome: Outcome, held: bool, ms: float) -> None:
        d = outcome.delivery
        fields: dict[str, Any] = {
            "delivery": d.id,
            "key": d.key,
            "version": d.version,
            "attempt": d.attempts,
            "status": outcome.status,
            "round_ms": ms,
        }
        if outcome.state == SENT:
            log.info("delivery sent", **fields)
        elif outcome.state == FAILED:
            log.error("delivery failed", error=outcome.error, **fields)
        else:
            log.warning("delivery retried", error=outcome.error, **fields)
        if not held:
            log.warning("delivery lease lost", delivery=d.id, key=d.key)

    async def _send(self, client: httpx.AsyncClient, d: Delivery) -> Outcome:
        method = d.headers.get("method", "POST")
        identifier = d.headers.get("identifier")
        if method == "POST" and d.attempts > 1 and identifier:
            method = "PUT"  # the POST may have reached the platform: never a duplicate
        url = f"{self.target.url.rstrip('/')}/Appointment"
        params = {"identifier": identifier} if method == "PUT" and identifier else None
        try:
            response = await client.request(method, url, params=params, content=d.body or b"")
        except httpx.TimeoutException:
            return Outcome(d, PENDING, None, f"no answer within {self.timeout:g} s")
        except (httpx.HTTPError, ssl.SSLError, OSError) as exc:
            return Outcome(d, PENDING, None, f"{type(exc).__name__}: {_short(exc)}")
        status = response.status_code
        if 200 <= status < 300:
            return Outcome(d, SENT, status)
        error = f"{method} HTTP {status}{_diagnostics(response.content)}"
        if status >= 500 or status in RETRIED_STATUSES:
            return Outcome(d, PENDING, status, error)
        return Outcome(d, FAILED, status, error)


def _short(exc: Exception) -> str:
    text = str(exc)
    return text.splitlines()[0][:200] if text else "failed"


def _diagnostics(content: bytes) -> str:
    """The first issue of an OperationOutcome answer, a line at most."""
    try:
        outcome = orjson.loads(content[:65536])
        issue = outcome["issue"][0]
        text = issue.get("diagnostics") or (issue.get("details") or {}).get("text")
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError):
        return ""
    return f": {str(text).splitlines()[0][:300]}" if text else ""
