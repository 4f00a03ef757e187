"""Fetching one source's bytes with httpx: a conditional GET for a feed URL, or the SAS
slot search against a vendor's SAS FHIR API (pages followed through ``next`` links).

Every response is bounded in size (``FHIR_INGEST_MAX_BYTES``, refused as soon as it passes
it, never read whole) and each request in time (the source's ``timeout``). Errors say what
failed in a line for the operator, never a header value, a key or a query string.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import orjson

from fhir_server.ingest.pull.config import SAS_QUERY_MAX_RPPS, PullSource
from mappings.contract import PARIS

IDNPS = "urn:oid:1.2.250.1.71.4.2.1"  # the national practitioner identifier system
USER_AGENT = "sas-fhir-server pull"


class FetchError(Exception):
    """The source could not be read; the message is safe to store and log."""


Renew = Callable[[], Awaitable[None]]  # called before each request (the lease's renewal)


async def _no_renewal() -> None:
    return None


@dataclass(slots=True)
class Fetched:
    """What one poll read: ``bodies`` (one per feed to map; none when not modified) and the
    validators to send next time."""

    not_modified: bool = False
    bodies: list[tuple[str, bytes]] = field(default_factory=list)  # (location, bytes)
    etag: str | None = None
    last_modified: str | None = None
    requests: int = 0


def where(url: str) -> str:
    """A URL as errors and issue locations show it: without its query (it may hold keys)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def tls_context(source: PullSource) -> ssl.SSLContext:
    """The client side of mTLS: our certificate and key, the vendor's CA (else the system's).
    Built once per set of files (loading a CA bundle takes tens of milliseconds: not per
    poll); a changed file is read again after a restart."""
    tls = source.tls
    if tls is None:
        return _context(None, None, None)
    return _context(str(tls.cert), str(tls.key), str(tls.ca) if tls.ca else None)


@functools.cache
def _context(cert: str | None, key: str | None, ca: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca)
    if cert is not None:
        context.load_cert_chain(cert, key)
    return context


@asynccontextmanager
async def client_for(source: PullSource) -> AsyncIterator[httpx.AsyncClient]:
    try:
        verify = tls_context(source)
    except (OSError, ssl.SSLError) as exc:
        raise FetchError(f"cannot load the TLS client certificate or CA: {exc}") from None
    headers = {"User-Agent": USER_AGENT, **source.headers}
    async with httpx.AsyncClient(
        verify=verify,
        timeout=httpx.Timeout(source.timeout),
        headers=headers,
        follow_redirects=False,  # a redirect elsewhere must not receive our certificate
    ) as client:
        yield client


async def fetch(
    source: PullSource,
    etag: str | None,
    last_modified: str | None,
    max_bytes: int,
    now: datetime,
    renew: Renew = _no_renewal,
) -> Fetched:
    async with client_for(source) as client:
        if source.format == "sas-fhir":
            return await _sas_search(client, source, max_bytes, now, renew)
        await renew()
        return await _conditional_get(client, source, etag, last_modified, max_bytes)


async def _conditional_get(
    client: httpx.AsyncClient,
    source: PullSource,
    etag: str | None,
    last_modified: str | None,
    max_bytes: int,
) -> Fetched:
    headers = {}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    status, body, answer = await _get(client, source.url, headers, max_bytes)
    fetched = Fetched(requests=1)
    if status == 304:
        if not headers:
            raise FetchError(f"{where(source.url)}: 304 to a GET that was not conditional")
        fetched.not_modified = True
        fetched.etag = answer.get("etag") or etag  # a 304 may carry the validators again
        fetched.last_modified = answer.get("last-modified") or last_modified
        return fetched
    fetched.bodies.append((where(source.url), body))
    fetched.etag = answer.get("etag")
    fetched.last_modified = answer.get("last-modified")
    return fetched


def sas_query(source: PullSource, rpps: list[str], now: datetime) -> str:
    """The SAS platform's PS slot search (sas-guide: specifications techniques, recherche
    de créneaux PS): free slots of up to 25 practitioners over [now, now + window]."""
    end = now + timedelta(days=source.window_days)
    params = [
        ("_include", "Slot:schedule"),
        ("_include:iterate", "Schedule:actor"),
        ("start", "ge" + _instant(now)),
        ("start", "le" + _instant(end)),
        ("schedule.actor:Practitioner.identifier", ",".join(f"{IDNPS}|8{r}" for r in rpps)),
        ("status", "free"),
    ]
    return f"{source.url.rstrip('/')}/Slot?{urlencode(params)}"


def _instant(moment: datetime) -> str:
    return moment.astimezone(PARIS).isoformat(timespec="milliseconds")


async def _sas_search(
    client: httpx.AsyncClient, source: PullSource, max_bytes: int, now: datetime, renew: Renew
) -> Fetched:
    """One merged searchset Bundle per query of 25 practitioners: the entries of every page,
    under the first page's links (its ``self`` carries the window the mapper reads)."""
    fetched = Fetched()
    origin = urlsplit(source.url)[:2]
    for first in range(0, len(source.rpps), SAS_QUERY_MAX_RPPS):
        url: str | None = sas_query(source, source.rpps[first : first + SAS_QUERY_MAX_RPPS], now)
        merged: dict[str, Any] | None = None
        budget = max_bytes
        pages = 0
        while url is not None:
            if pages == source.max_pages:
                raise FetchError(
                    f"{where(source.url)}: more than {source.max_pages} pages (max_pages)"
                )
            if urlsplit(url)[:2] != origin:
                raise FetchError(f"{where(source.url)}: a next link leaves the source's host")
            accept = {"Accept": "application/fhir+json"}
            await renew()
            _status, body, _ = await _get(client, url, accept, budget)
            fetched.requests += 1
            pages += 1
            budget -= len(body)
            page = _bundle(body, url)
            if merged is None:
                merged = page
            else:
                merged.setdefault("entry", []).extend(page.get("entry") or [])
            url = _next_link(page)
        assert merged is not None
        merged["link"] = [link for link in merged.get("link") or [] if _rel(link) != "next"]
        label = f"{where(source.url)}#query{first // SAS_QUERY_MAX_RPPS + 1}"
        fetched.bodies.append((label, orjson.dumps(merged)))
    return fetched


def _bundle(body: bytes, url: str) -> dict[str, Any]:
    try:
        page = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise FetchError(f"{where(url)}: the answer is not JSON ({exc})") from None
    if not isinstance(page, dict) or page.get("resourceType") != "Bundle":
        raise FetchError(f"{where(url)}: the answer is not a FHIR Bundle")
    if not isinstance(page.get("entry", []), list) or not isinstance(page.get("link", []), list):
        raise FetchError(f"{where(url)}: the Bundle's entry or link is not a list")
    return page


def _rel(link: Any) -> str | None:
    return link.get("relation") if isinstance(link, dict) else None


def _next_link(page: dict[str, Any]) -> str | None:
    for link in page.get("link") or []:
        if _rel(link) == "next" and isinstance(link.get("url"), str):
            return str(link["url"])
    return None


async def _get(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], max_bytes: int
) -> tuple[int, bytes, httpx.Headers]:
    """Status, body (bounded) and headers of a GET; ``FetchError`` unless 200 or 304. The
    whole request is bounded by the client's timeout, not only each read (a body dripping
    a byte at a time would otherwise hold the poll, and its lease, for ever)."""
    limit = client.timeout.read or 30.0
    try:
        async with asyncio.timeout(limit):
            return await _get_within(client, url, headers, max_bytes)
    except TimeoutError:
        raise FetchError(f"{where(url)}: no answer within the timeout") from None


async def _get_within(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], max_bytes: int
) -> tuple[int, bytes, httpx.Headers]:
    try:
        async with client.stream("GET", url, headers=headers) as response:
            if response.status_code == 304:
                return 304, b"", response.headers
            if response.status_code != 200:
                raise FetchError(f"{where(url)}: HTTP {response.status_code}")
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise FetchError(f"{where(url)}: {int(declared):,} bytes, more than {max_bytes:,}")
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise FetchError(f"{where(url)}: more than the {max_bytes:,} bytes allowed")
                chunks.append(chunk)
            return 200, b"".join(chunks), response.headers
    except httpx.TimeoutException:
        raise FetchError(f"{where(url)}: no answer within the timeout") from None
    except (httpx.HTTPError, ssl.SSLError, OSError) as exc:
        # TLS 1.3: a refused client certificate is an alert read after the handshake,
        # raised as it is by the TLS layer
        raise FetchError(f"{where(url)}: {type(exc).__name__}: {_short(exc)}") from None


def _short(exc: Exception) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else "failed"
