"""A tiny real HTTP server for pull tests, on loopback in a thread: it serves fixtures with
ETag/Last-Modified (answering 304 to a matching conditional GET), counts requests per path
(with their times and headers), and can misbehave per path: fail with a status, be slow,
hang, stall mid-body, send more than announced."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


@dataclass
class Route:
    body: bytes
    etag: str | None = None
    last_modified: str | None = None
    status: int = 200
    delay: float = 0.0  # before the answer
    stall: float = 0.0  # after half the body: seconds of silence (then the rest)
    drip: bool = False  # the body one byte every 0.2 s (never ends before a timeout)
    stall_times: int = 1_000_000  # how many requests stall (the next ones do not)
    unannounced: bool = False  # no Content-Length: the body runs until the connection closes


@dataclass
class Hit:
    path: str
    at: float
    headers: dict[str, str]
    query: str


@dataclass
class FeedServer:
    routes: dict[str, Route] = field(default_factory=dict)
    hits: list[Hit] = field(default_factory=list)
    base: str = ""
    stopping: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return self.base + path

    def count(self, path: str) -> int:
        with self.lock:
            return sum(1 for h in self.hits if h.path == path)

    def of(self, path: str) -> list[Hit]:
        with self.lock:
            return [h for h in self.hits if h.path == path]

    def _sleep(self, seconds: float) -> None:
        self.stopping.wait(seconds)


def _handler(server: FeedServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_: object) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            with server.lock:
                server.hits.append(
                    Hit(parts.path, time.monotonic(), dict(self.headers.items()), parts.query)
                )
                seen = sum(1 for h in server.hits if h.path == parts.path)
            route = server.routes.get(parts.path)
            if route is None:
                self._answer(404, b"not found")
                return
            server._sleep(route.delay)
            if route.etag and self.headers.get("If-None-Match") == route.etag:
                self._answer(304, b"", route)
                return
            if route.last_modified and self.headers.get("If-Modified-Since") == route.last_modified:
                self._answer(304, b"", route)
                return
            stalls = seen <= route.stall_times
            if route.drip and stalls:
                self._head(route.status, len(route.body), route)
                for byte in route.body:
                    if server.stopping.is_set():
                        return
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    server._sleep(0.2)
                return
            if route.stall and stalls:
                half = len(route.body) // 2
                self._head(route.status, len(route.body), route)
                self.wfile.write(route.body[:half])
                self.wfile.flush()
                server._sleep(route.stall)
                self.wfile.write(route.body[half:])
                return
            if route.unannounced:
                self.send_response(route.status)
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(route.body)
                self.close_connection = True
                return
            self._answer(route.status, route.body, route)

        def _head(self, status: int, length: int, route: Route | None) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(length))
            self.send_header("Content-Type", "application/json")
            if route is not None and route.etag:
                self.send_header("ETag", route.etag)
            if route is not None and route.last_modified:
                self.send_header("Last-Modified", route.last_modified)
            self.end_headers()

        def _answer(self, status: int, body: bytes, route: Route | None = None) -> None:
            self._head(status, len(body), route)
            if body:
                self.wfile.write(body)

    return Handler


@contextmanager
def feed_server(tls: ssl.SSLContext | None = None) -> Iterator[FeedServer]:
    """A running ``FeedServer`` on 127.0.0.1 (HTTPS with ``tls``)."""
    state = FeedServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    if tls is not None:
        httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    scheme = "https" if tls is not None else "http"
    state.base = f"{scheme}://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.stopping.set()
        httpd.shutdown()
        httpd.server_close()
