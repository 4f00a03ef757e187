"""A loopback HTTP receiver that answers from a script: the n-th request gets the n-th
status of ``answers`` (200 once the script is exhausted); every request is recorded."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Scripted:
    url: str
    answers: list[int]
    hits: list[tuple[str, str, int, float]] = field(default_factory=list)  # method, path, code
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, method: str, path: str) -> int:
        with self.lock:
            code = self.answers[len(self.hits)] if len(self.hits) < len(self.answers) else 200
            self.hits.append((method, path, code, time.monotonic()))
            return code

    def codes(self) -> list[int]:
        with self.lock:
            return [h[2] for h in self.hits]

    def wait_for(self, count: int, timeout: float = 20.0) -> list[int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.codes()) >= count:
                return self.codes()
            time.sleep(0.02)
        raise AssertionError(f"{len(self.codes())} requests, wanted {count}")


@contextmanager
def scripted(*answers: int) -> Iterator[Scripted]:
    receiver: Scripted

    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            self.send_response(receiver.answer(self.command, self.path))
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_POST = do_PUT = _any

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver = Scripted(f"http://127.0.0.1:{server.server_address[1]}", list(answers))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
