"""A bounded closed-loop load runner and three HTTP/1.1 clients to drive it.

``run_load`` keeps ``concurrency`` requests in flight until the duration is over or the
request cap is reached, whichever comes first; every request has its own timeout and the
whole run a hard one, so it always stops by itself. Only ``127.0.0.1`` is ever contacted.

Clients (``--client``), all keep-alive, one connection per worker:

- ``httpx``: ``httpx.AsyncClient`` (what our users would write);
- ``h11``: raw asyncio streams + the pure-Python h11 parser;
- ``raw``: raw asyncio streams + httptools, the C parser uvicorn itself uses.

On a small machine the load generator shares the CPUs with the server, so the client's own
cost per request matters: ``rest.py`` reports the client's CPU next to the server's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit

import h11
import httptools
import httpx

FHIR_JSON = "application/fhir+json"
LOOPBACK = "127.0.0.1"

Request = tuple[str, str, bytes | None, tuple[tuple[str, str], ...]]  # method, path, body, headers


class Client(Protocol):
    async def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> tuple[int, bytes]: ...

    async def aclose(self) -> None: ...


def _check_loopback(base: str) -> tuple[str, int]:
    parts = urlsplit(base)
    if parts.scheme != "http" or parts.hostname != LOOPBACK or parts.port is None:
        raise ValueError(f"the load runner only talks to http://{LOOPBACK}:<port>, not {base}")
    return parts.hostname, parts.port


class HttpxClient:
    def __init__(self, base: str, concurrency: int, timeout: float) -> None:
        _check_loopback(base)
        self._client = httpx.AsyncClient(
            base_url=base,
            trust_env=False,  # no proxy: loopback only
            timeout=timeout,
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
            headers={"Accept": FHIR_JSON},
        )

    async def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> tuple[int, bytes]:
        sent = dict(headers)
        if body is not None:
            sent["Content-Type"] = FHIR_JSON
        response = await self._client.request(method, path, content=body, headers=sent)
        return response.status_code, response.content

    async def aclose(self) -> None:
        await self._client.aclose()


class _Connection:
    """One keep-alive connection; ``exchange`` sends one request and reads one response."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.reusable = True

    def close(self) -> None:
        self.reusable = False
        self.writer.close()


class _RawResponse:
    __slots__ = ("body", "close", "done")

    def __init__(self) -> None:
        self.body: list[bytes] = []
        self.done = False
        self.close = False  # HTTP/1.1 keeps the connection unless told otherwise

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"connection" and value.strip().lower() == b"close":
            self.close = True

    def on_body(self, chunk: bytes) -> None:
        self.body.append(chunk)

    def on_message_complete(self) -> None:
        self.done = True


class StreamClient:
    """Raw asyncio streams, parsed with httptools (``raw``) or h11 (``h11``)."""

    def __init__(self, base: str, parser: str) -> None:
        self.host, self.port = _check_loopback(base)
        self.parser = parser
        self._idle: list[_Connection] = []
        self._host_header = f"{self.host}:{self.port}"

    async def _connection(self) -> _Connection:
        if self._idle:
            return self._idle.pop()
        reader, writer = await asyncio.open_connection(self.host, self.port)
        return _Connection(reader, writer)

    def _head(
        self, method: str, path: str, body: bytes | None, headers: tuple[tuple[str, str], ...]
    ) -> bytes:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self._host_header}", f"Accept: {FHIR_JSON}"]
        if body is not None:
            lines += [f"Content-Type: {FHIR_JSON}", f"Content-Length: {len(body)}"]
        lines += [f"{k}: {v}" for k, v in headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> tuple[int, bytes]:
        conn = await self._connection()
        try:
            if self.parser == "h11":
                status, data = await self._h11(conn, method, path, body, headers)
            else:
                status, data = await self._httptools(conn, method, path, body, headers)
        except BaseException:
            conn.close()
            raise
        if conn.reusable:
            self._idle.append(conn)
        else:
            conn.close()
        return status, data

    async def _httptools(
        self,
        conn: _Connection,
        method: str,
        path: str,
        body: bytes | None,
        headers: tuple[tuple[str, str], ...],
    ) -> tuple[int, bytes]:
        conn.writer.write(self._head(method, path, body, headers) + (body or b""))
        response = _RawResponse()
        parser = httptools.HttpResponseParser(response)
        while not response.done:
            chunk = await conn.reader.read(262144)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            parser.feed_data(chunk)
        # (httptools' should_keep_alive() is False once the message is complete: not usable here)
        conn.reusable = not response.close
        return parser.get_status_code(), b"".join(response.body)

    async def _h11(
        self,
        conn: _Connection,
        method: str,
        path: str,
        body: bytes | None,
        headers: tuple[tuple[str, str], ...],
    ) -> tuple[int, bytes]:
        proto = h11.Connection(h11.CLIENT)  # a fresh state machine per exchange: no pipelining
        sent = [("Host", self._host_header), ("Accept", FHIR_JSON), *headers]
        if body is not None:
            sent += [("Content-Type", FHIR_JSON), ("Content-Length", str(len(body)))]
        out = proto.send(h11.Request(method=method, target=path, headers=sent)) or b""
        if body:
            out += proto.send(h11.Data(data=body)) or b""
        out += proto.send(h11.EndOfMessage()) or b""
        conn.writer.write(out)
        status, chunks = 0, []
        while True:
            event = proto.next_event()
            if event is h11.NEED_DATA:
                chunk = await conn.reader.read(262144)
                proto.receive_data(chunk)  # b"" means closed: h11 then raises or ends
                if not chunk and proto.their_state is not h11.DONE:
                    raise ConnectionError("the server closed the connection")
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
                conn.reusable = all(
                    not (k.lower() == b"connection" and v.lower() == b"close")
                    for k, v in event.headers
                )
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return status, b"".join(chunks)
            else:
                raise ConnectionError(f"unexpected HTTP event {event!r}")

    async def aclose(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()


CLIENTS = ("raw", "h11", "httpx")


def make_client(kind: str, base: str, concurrency: int, timeout: float) -> Client:
    if kind == "httpx":
        return HttpxClient(base, concurrency, timeout)
    if kind in ("raw", "h11"):
        return StreamClient(base, kind)
    raise ValueError(f"unknown client {kind!r}; one of {', '.join(CLIENTS)}")


@dataclass
class Result:
    scenario: str
    requests: int = 0  # answered with the expected status
    errors: int = 0
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests
    error_samples: list[str] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)  # share of one core over the run
    stopped_by: str = "time"
    warmup_requests: int = 0  # successful, not measured
    items_per_request: int = 1  # resources per request (transaction bundles)

    @property
    def rate(self) -> float:
        return self.requests / self.elapsed if self.elapsed else 0.0

    def percentile(self, p: float) -> float:
        """Nearest-rank percentile in milliseconds (0 when nothing succeeded)."""
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
        return ordered[rank] * 1000


MakeRequest = Callable[[int], Request]


@dataclass(frozen=True)
class Load:
    """What one scenario sends and accepts."""

    scenario: str
    make: MakeRequest  # make(n) builds the n-th request
    expect: int  # the status of a successful answer
    check: Callable[[bytes], bool] | None = None  # and a test of its body
    concurrency: int = 8
    request_timeout: float = 30.0
    max_errors: int = 1000  # stop early when the server is clearly broken


async def run_load(
    client: Client,
    load: Load,
    *,
    duration: float,
    max_requests: int,
    warmup: float = 0.0,
    cpu_probes: dict[str, Callable[[], float]] | None = None,
) -> Result:
    """Closed loop: ``concurrency`` workers, each sending its next request when one returns.

    A warm-up (not measured, at most a tenth of the cap) comes first; the measured phase
    numbers its requests from 1e9 so generated data never repeats the warm-up's.
    """
    warm = Result(load.scenario)
    if warmup > 0:
        await _phase(client, load, warm, 0, warmup, max(1, max_requests // 10))
    result = Result(load.scenario, warmup_requests=warm.requests)
    probes = cpu_probes or {}
    before = {name: probe() for name, probe in probes.items()}
    await _phase(client, load, result, 1_000_000_000, duration, max_requests)
    for name, probe in probes.items():
        result.cpu[name] = (probe() - before[name]) / result.elapsed if result.elapsed else 0.0
    return result


async def _phase(
    client: Client, load: Load, result: Result, first: int, duration: float, cap: int
) -> None:
    issued = 0
    start = time.perf_counter()
    deadline = start + duration

    async def worker() -> None:
        nonlocal issued
        while issued < cap and result.errors < load.max_errors and time.perf_counter() < deadline:
            method, path, body, headers = load.make(first + issued)
            issued += 1
            began = time.perf_counter()
            try:
                async with asyncio.timeout(load.request_timeout):
                    status, data = await client.request(method, path, body, headers)
            except (
                TimeoutError,
                OSError,
                ValueError,
                httpx.HTTPError,
                h11.ProtocolError,
                httptools.HttpParserError,
            ) as exc:
                _error(result, f"{method} {path}: {type(exc).__name__} {exc}")
                continue
            took = time.perf_counter() - began
            if status != load.expect:
                _error(result, f"{method} {path}: HTTP {status} {data[:200]!r}")
            elif load.check is not None and not load.check(data):
                _error(result, f"{method} {path}: unexpected body {data[:200]!r}")
            else:
                result.requests += 1
                result.latencies.append(took)

    # Hard stop: every request has its own timeout, so the workers end by then in any case.
    workers = asyncio.gather(*(worker() for _ in range(load.concurrency)))
    await asyncio.wait_for(workers, duration + load.request_timeout + 10)
    result.elapsed = time.perf_counter() - start
    if issued >= cap:
        result.stopped_by = "request cap"
    elif result.errors >= load.max_errors:
        result.stopped_by = "too many errors"


def _error(result: Result, message: str) -> None:
    result.errors += 1
    if len(result.error_samples) < 5:
        result.error_samples.append(message)
