"""A loopback HTTPS receiver playing the SAS platform's appointment API, with mutual TLS:
it requires a client certificate of the test CA, records what it receives, and answers
as the test says (``mode``): ``ok`` (201 to a POST, 200 to a PUT), ``500``, ``500-once``
(500, then ``ok``), ``400``,
``hang`` (answers nothing for ``hang`` seconds), or stopped (connections refused)."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from auth import devcerts
from tests.servers import free_port

CLIENT_CN, CLIENT_OU = "editeur-test", "EDITEUR"


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    identifier: str | None
    body: dict[str, Any]
    client_cn: str | None


@dataclass(frozen=True)
class Pki:
    """A throwaway CA with the receiver's server certificate and our client certificate."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    stranger_cert: Path  # a client certificate of another CA: refused by the receiver
    stranger_key: Path


def make_pki(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    ca = devcerts.new_ca()
    (directory / "ca.pem").write_bytes(devcerts.pem(ca.cert))
    devcerts.server_cert(ca).write(directory / "server.pem", directory / "server.key")
    devcerts.client_cert(ca, CLIENT_CN, CLIENT_OU).write(
        directory / "client.pem", directory / "client.key"
    )
    devcerts.self_signed_client_cert(CLIENT_CN, CLIENT_OU).write(
        directory / "stranger.pem", directory / "stranger.key"
    )
    return Pki(
        directory / "ca.pem",
        directory / "server.pem",
        directory / "server.key",
        directory / "client.pem",
        directory / "client.key",
        directory / "stranger.pem",
        directory / "stranger.key",
    )


@dataclass
class Receiver:
    pki: Pki
    port: int = field(default_factory=free_port)
    mode: str = "ok"
    hang: float = 3.0
    received: list[Received] = field(default_factory=list)
    attempts: int = 0  # requests answered, whatever the answer
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.pki.server_cert, self.pki.server_key)
        context.load_verify_locations(self.pki.ca)
        context.verify_mode = ssl.CERT_REQUIRED
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: one handshake per connection
            disable_nagle_algorithm = True  # headers and body written apart: no 40 ms wait

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(length) if length else b""
                with receiver._lock:
                    receiver.attempts += 1
                    mode = receiver.mode
                    if mode == "500-once":  # this answer fails, the next ones succeed
                        receiver.mode = "ok"
                        mode = "500"
                if mode == "hang":
                    time.sleep(receiver.hang)
                    return self._reply(503, {})
                if mode == "500":
                    return self._reply(500, _outcome("exception", "the platform is down"))
                if mode == "400":
                    return self._reply(400, _outcome("invalid", "Appointment.identifier: missing"))
                parts = urlsplit(self.path)
                identifier = parse_qs(parts.query).get("identifier", [None])[0]
                cert = self.connection.getpeercert()  # type: ignore[attr-defined]
                subject = dict(x[0] for x in cert.get("subject", ())) if cert else {}
                with receiver._lock:
                    receiver.received.append(
                        Received(
                            self.command,
                            parts.path,
                            identifier,
                            orjson.loads(data) if data else {},
                            subject.get("commonName"),
                        )
                    )
                self._reply(201 if self.command == "POST" else 200, {})

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                payload = orjson.dumps(body)
                self.send_response(status)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:
                """``GET /count``: how many were received (a receiver in another process)."""
                with receiver._lock:
                    count = len(receiver.received)
                self._reply(200, {"received": count})

            do_POST = _answer
            do_PUT = _answer

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def wait_for(self, count: int, timeout: float = 20.0) -> list[Received]:
        """The received messages once there are ``count`` (fails after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.02)
        with self._lock:
            raise AssertionError(f"received {len(self.received)} of {count}: {self.received}")


def _outcome(code: str, text: str) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": text}],
    }


@contextmanager
def receiving(pki: Pki, **options: Any) -> Iterator[Receiver]:
    receiver = Receiver(pki, **options)
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()


def main() -> None:
    """``python -m tests.delivery.receiver DIR PORT``: a receiver in its own process, with
    the certificates of ``make_pki(DIR)`` (benchmarks: not sharing the sender's GIL)."""
    import sys

    directory, port = Path(sys.argv[1]), int(sys.argv[2])
    pki = Pki(
        directory / "ca.pem",
        directory / "server.pem",
        directory / "server.key",
        directory / "client.pem",
        directory / "client.key",
        directory / "stranger.pem",
        directory / "stranger.key",
    )
    receiver = Receiver(pki, port=port)
    receiver.start()
    print("ready", flush=True)
    sys.stdin.read()  # until the parent closes our stdin
    receiver.stop()


if __name__ == "__main__":
    main()
