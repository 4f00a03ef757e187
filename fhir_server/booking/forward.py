"""Booking a slot whose agenda lives at a remote vendor (a ``sas-fhir`` pull source): the
Appointment is sent to the owner's SAS FHIR API first, and only the owner's confirmation
lets the booking be recorded here (docs/forwarding.md).

This module is HTTP only: no database. ``create`` POSTs ``[base]/Appointment``; ``cancel``
PUTs ``[base]/Appointment?identifier=system|value`` (the SAS way to update an appointment,
sas-guide §2.6). Each attempt is bounded whole by ``Limits.timeout``; connection errors,
timeouts, 408, 429 and 5xx are retried (at most ``Limits.retries`` times, backoff doubling,
jittered down to half) within ``Limits.deadline`` for all attempts and waits together.
Every attempt carries the same identifier, ``If-None-Exist`` and ``Idempotency-Key``, so a
retry after a lost answer finds the first appointment instead of making a second one.

Outcomes: ``Confirmed`` (the owner's Appointment), ``Refused`` (the owner said no: its
reason), ``Unreachable`` (no decision within the deadline; ``uncertain`` when an attempt
may have reached the owner without its answer reaching us: a timeout, a connection lost
mid-answer; the owner may then have booked). Messages never carry a
header, a key, a certificate, or patient data.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import random
import ssl
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import orjson
import structlog

from fhir_server.booking import patient

log = structlog.get_logger(__name__)

FhirJson = dict[str, Any]
KEY_SYSTEM = "urn:ietf:rfc:3986"  # a generated identifier: urn:uuid:...
USER_AGENT = "sas-fhir-server forward"
MAX_ANSWER = 1_048_576  # an Appointment or an OperationOutcome: far less than this
RETRIED = frozenset({408, 429})


@dataclass(frozen=True)
class Owner:
    """A remote vendor that owns slots: its pull source's name, FHIR base URL, and the mTLS
    material and headers of that source."""

    name: str
    base: str
    cert: Path | None = None
    key: Path | None = None
    ca: Path | None = None
    headers: Mapping[str, str] = field(default_factory=dict, hash=False)

    def url(self, path: str) -> str:
        return f"{self.base.rstrip('/')}/{path}"


@dataclass(frozen=True)
class Limits:
    timeout: float = 5.0  # seconds for each attempt, whole
    retries: int = 2  # attempts after the first
    deadline: float = 10.0  # seconds for every attempt and wait together
    backoff: float = 0.5  # seconds before the first retry; doubled each time


@dataclass(frozen=True)
class Confirmed:
    status: int
    appointment: FhirJson  # the owner's Appointment as it answered it
    attempts: int

    @property
    def remote_id(self) -> str | None:
        rid = self.appointment.get("id")
        return rid if isinstance(rid, str) else None


class ForwardError(Exception):
    """The owner did not confirm; ``reason`` is safe to show to the client and to log."""

    def __init__(self, owner: str, reason: str, attempts: int) -> None:
        super().__init__(f"{owner}: {reason}")
        self.owner = owner
        self.reason = reason
        self.attempts = attempts


class Refused(ForwardError):
    """The owner answered no (4xx other than 408/429): the slot is not booked there."""

    def __init__(self, owner: str, reason: str, attempts: int, status: int) -> None:
        super().__init__(owner, reason, attempts)
        self.status = status


class Unreachable(ForwardError):
    """No decision from the owner within the deadline (or its answers were unusable)."""

    def __init__(self, owner: str, reason: str, attempts: int, *, uncertain: bool) -> None:
        super().__init__(owner, reason, attempts)
        self.uncertain = uncertain  # the owner may have acted on one of the attempts


def booking_key(appointment: FhirJson) -> FhirJson:
    """The identifier the owner knows this booking by: the client's own (first) identifier,
    so a client retrying with it is idempotent end to end; else a new ``urn:uuid``."""
    for identifier in appointment.get("identifier") or []:
        if isinstance(identifier, dict) and identifier.get("system") and identifier.get("value"):
            return {"system": identifier["system"], "value": identifier["value"]}
    return {"system": KEY_SYSTEM, "value": f"urn:uuid:{uuid.uuid4()}"}


def for_owner(appointment: FhirJson, remote_slot: str | list[str], key: FhirJson) -> FhirJson:
    """The Appointment as the owner gets it (FrAppointmentSAS): its slot by the owner's id,
    people by identifier only (our ids mean nothing there), exactly one identifier. The
    patient's minimal data (``patient.py``) goes with it, contained and referenced as here:
    the owner is the practitioner's agenda, who must know whom to expect."""
    out = copy.deepcopy(appointment)
    for local in ("id", "text"):
        out.pop(local, None)
    contained = [c for c in out.pop("contained", None) or () if _the_patient(c)]
    if contained:
        out["contained"] = contained
    meta = out.pop("meta", None)
    if isinstance(meta, dict) and meta.get("profile"):
        out["meta"] = {"profile": meta["profile"]}  # versionId, lastUpdated: ours
    out["identifier"] = [key]
    remote = [remote_slot] if isinstance(remote_slot, str) else remote_slot
    out["slot"] = [{"reference": f"Slot/{rid}"} for rid in remote]
    participants = []
    for participant in out.get("participant") or []:
        if not isinstance(participant, dict):
            continue
        actor = participant.get("actor")
        if isinstance(actor, dict):
            kept = {k: actor[k] for k in ("identifier", "display") if k in actor}
            if contained and actor.get("reference") == patient.REFERENCE:
                kept = {"reference": patient.REFERENCE, "type": "Patient"}
            if kept:
                participant["actor"] = kept
            else:
                participant.pop("actor")
        participants.append(participant)
    if participants:
        out["participant"] = participants
    return out


def _the_patient(resource: Any) -> bool:
    return (
        isinstance(resource, dict)
        and resource.get("resourceType") == "Patient"
        and resource.get("id") == patient.PATIENT_ID
    )


@dataclass(frozen=True)
class Owners:
    """The remote owners by the identifier system their pulled slots carry
    (``urn:sas-fhir-server:VENDOR:slot``, value: the owner's slot id; mappings/sas_fhir.py)."""

    by_system: Mapping[str, Owner] = field(default_factory=dict)
    limits: Limits = Limits()

    def of_slot(self, slot: FhirJson) -> tuple[Owner, str] | None:
        """The owner of ``slot`` and its id there; None for a slot of our own."""
        for identifier in slot.get("identifier") or []:
            if not isinstance(identifier, dict):
                continue
            owner = self.by_system.get(str(identifier.get("system")))
            value = identifier.get("value")
            if owner is not None and isinstance(value, str) and value:
                return owner, value
        return None


def _token(key: FhirJson) -> str:
    return f"{key['system']}|{key['value']}"


async def create(owner: Owner, appointment: FhirJson, key: FhirJson, limits: Limits) -> Confirmed:
    """POST the Appointment to the owner until it decides (or the deadline passes)."""
    headers = {
        "If-None-Exist": f"identifier={_token(key)}",
        "Idempotency-Key": _token(key),
    }
    return await _send(owner, "POST", owner.url("Appointment"), appointment, headers, limits)


async def cancel(owner: Owner, appointment: FhirJson, key: FhirJson, limits: Limits) -> Confirmed:
    """PUT the Appointment at the owner, found by its identifier (the SAS update): a cancel,
    or the same appointment moved to other slots of that owner."""
    url = owner.url("Appointment?identifier=" + quote(_token(key), safe=":/"))
    return await _send(owner, "PUT", url, appointment, {}, limits)


async def _send(
    owner: Owner,
    method: str,
    url: str,
    body: FhirJson,
    headers: dict[str, str],
    limits: Limits,
) -> Confirmed:
    started = time.monotonic()
    ends = started + limits.deadline
    content = orjson.dumps(body)
    all_headers = {
        "User-Agent": USER_AGENT,
        "Content-Type": "application/fhir+json",
        "Accept": "application/fhir+json",
        **owner.headers,
        **headers,
    }
    try:
        verify = _context(
            str(owner.cert) if owner.cert else None,
            str(owner.key) if owner.key else None,
            str(owner.ca) if owner.ca else None,
        )
    except (OSError, ssl.SSLError) as exc:
        reason = f"cannot load the TLS material: {exc}"
        raise Unreachable(owner.name, reason, 0, uncertain=False) from None
    attempts = 0
    reason = "no attempt"
    uncertain = False  # sticky: a later failure does not undo what an earlier one left open
    async with httpx.AsyncClient(
        verify=verify, follow_redirects=False, timeout=httpx.Timeout(limits.timeout)
    ) as client:
        while attempts <= limits.retries:
            left = ends - time.monotonic()
            if left <= 0:
                break
            attempts += 1
            try:
                async with asyncio.timeout(min(limits.timeout, left)):
                    status, answer = await _attempt(client, method, url, content, all_headers)
            except TimeoutError:
                reason, uncertain = "no answer within the timeout", True
            except (httpx.ConnectError, httpx.ConnectTimeout, ssl.SSLError, OSError) as exc:
                reason = f"{type(exc).__name__}: {_short(exc)}"  # never sent
            except httpx.HTTPError as exc:
                reason, uncertain = f"{type(exc).__name__}: {_short(exc)}", True
            else:
                outcome = _decide(owner, status, answer, attempts)
                if isinstance(outcome, Confirmed):
                    _logged(owner, method, "confirmed", attempts, started, status)
                    return outcome
                if isinstance(outcome, Refused):
                    _logged(owner, method, "refused", attempts, started, status)
                    raise outcome
                reason = outcome
            wait = limits.backoff * 2 ** (attempts - 1) * random.uniform(0.5, 1.0)
            if attempts > limits.retries or time.monotonic() + wait >= ends:
                break
            await asyncio.sleep(wait)
    if time.monotonic() >= ends:
        reason = f"{reason} (deadline of {limits.deadline:g} s passed)"
    _logged(owner, method, "unreachable", attempts, started, None, reason=reason)
    raise Unreachable(owner.name, reason, attempts, uncertain=uncertain)


async def _attempt(
    client: httpx.AsyncClient, method: str, url: str, content: bytes, headers: dict[str, str]
) -> tuple[int, bytes]:
    async with client.stream(method, url, content=content, headers=headers) as response:
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > MAX_ANSWER:
                return response.status_code, b""  # an unusable answer, judged by its status
            chunks.append(chunk)
        return response.status_code, b"".join(chunks)


def _decide(owner: Owner, status: int, answer: bytes, attempts: int) -> Confirmed | Refused | str:
    """What one answer means: confirmed, refused, or a reason to try again."""
    document = _json(answer)
    if status in (200, 201):
        if isinstance(document, dict) and document.get("resourceType") == "Appointment":
            return Confirmed(status, document, attempts)
        return f"HTTP {status} without an Appointment"
    if status in RETRIED or status >= 500:
        return f"HTTP {status}" + _said(document)
    if status >= 400:
        said = _said(document)
        return Refused(owner.name, f"HTTP {status}{said}", attempts, status)
    return f"HTTP {status} unexpected"


def _json(answer: bytes) -> Any:
    try:
        return orjson.loads(answer) if answer else None
    except orjson.JSONDecodeError:
        return None


def _said(document: Any) -> str:
    """An OperationOutcome's first words (diagnostics, else details.text), bounded."""
    if not isinstance(document, dict) or document.get("resourceType") != "OperationOutcome":
        return ""
    for issue in document.get("issue") or []:
        if not isinstance(issue, dict):
            continue
        details = issue.get("details")
        text = issue.get("diagnostics") or (
            details.get("text") if isinstance(details, dict) else None
        )
        if isinstance(text, str) and text.strip():
            return ": " + " ".join(text.split())[:300]
    return ""


@functools.cache
def _context(cert: str | None, key: str | None, ca: str | None) -> ssl.SSLContext:
    """Our client certificate and the owner's CA (else the system's), once per file set."""
    context = ssl.create_default_context(cafile=ca)
    if cert is not None:
        context.load_cert_chain(cert, key)
    return context


def _short(exc: Exception) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else "failed"


def _logged(
    owner: Owner,
    method: str,
    outcome: str,
    attempts: int,
    started: float,
    status: int | None,
    **extra: str,
) -> None:
    parts = urlsplit(owner.base)
    log.info(
        "forwarded",
        owner=owner.name,
        address=f"{parts.scheme}://{parts.netloc}{parts.path}",
        method=method,
        outcome=outcome,
        status=status,
        attempts=attempts,
        ms=round((time.monotonic() - started) * 1000),
        **extra,
    )
