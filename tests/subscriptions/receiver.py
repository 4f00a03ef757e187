"""A loopback HTTP receiver for rest-hook notifications: ``/ok/...`` answers 200,
``/fail/...`` 500, ``/hang/...`` waits ``hang`` seconds; every request is recorded. A
``script`` of statuses answers the next requests first, whatever their path."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Hit:
    method: str
    path: str
    body: bytes
    headers: dict[str, str]
    at: float
    code: int = 200  # the status answered


@dataclass
class Receiver:
    url: str
    hits: list[Hit] = field(default_factory=list)
    hang: float = 30.0
    script: list[int] = field(default_factory=list)  # the next answers, in order
    lock: threading.Lock = field(default_factory=threading.Lock)

    def of(self, prefix: str) -> list[Hit]:
        with self.lock:
            return [h for h in self.hits if h.path.startswith(prefix)]

    def codes(self, prefix: str = "") -> list[int]:
        return [h.code for h in self.of(prefix)]

    def wait_for(self, prefix: str, count: int, timeout: float = 10.0) -> list[Hit]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.of(prefix)
            if len(found) >= count:
                return found
            time.sleep(0.02)
        raise AssertionError(f"{prefix}: {len(self.of(prefix))} hits, wanted {count}")


@contextmanager
def receiving(hang: float = 30.0, script: Sequence[int] = ()) -> Iterator[Receiver]:
    receiver: Receiver

    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            with receiver.lock:
                code = 500 if self.path.startswith("/fail") else 200
                code = receiver.script.pop(0) if receiver.script else code
                hit = Hit(self.command, self.path, body, dict(self.headers), time.monotonic(), code)
                receiver.hits.append(hit)
            if self.path.startswith("/hang"):
                time.sleep(receiver.hang)
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_POST = do_PUT = _any

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver = Receiver(
        f"http://127.0.0.1:{server.server_address[1]}", hang=hang, script=list(script)
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
