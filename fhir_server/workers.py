"""Several server processes on one port, each with its own listening socket.

uvicorn's ``--workers`` shares one listening socket between its processes, and the process
that wakes first accepts every pending connection: eight keep-alive connections opened
together (a load balancer's pool, the SAS platform's client) landed all on one of two
workers half the time, and the other stayed idle. Here each worker binds its own socket with
``SO_REUSEPORT``, and the kernel spreads new connections across the sockets.

The supervisor restarts a worker that dies (at most ``MAX_RESTARTS`` times in a row within a
minute, then it stops everything) and stops them all on SIGINT/SIGTERM.
"""

from __future__ import annotations

import multiprocessing
import signal
import socket
import time
from multiprocessing.process import BaseProcess
from types import FrameType

import structlog

log = structlog.get_logger(__name__)
MAX_RESTARTS = 5
STOP_TIMEOUT = 15.0  # seconds a worker gets to finish its requests


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` that other processes may bind too."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def _worker(host: str, port: int) -> None:
    from fhir_server import logging as fhir_logging
    from fhir_server import serving
    from fhir_server.settings import Settings

    settings = Settings()  # a spawned process: the same FHIR_* environment as the supervisor
    fhir_logging.configure(settings.log_level, settings.log_format)
    sock = listening_socket(host, port)
    # TLS, client certificates and connection limits exactly as a single process serves them
    serving.run(
        "fhir_server.app:create_app", settings, host=host, port=port, sock=sock, factory=True
    )


def serve_workers(host: str, port: int, workers: int) -> int:
    """Run ``workers`` server processes until SIGINT/SIGTERM; the exit status."""
    if port == 0:
        raise ValueError("several workers need a fixed port (each binds its own socket)")
    listening_socket(host, port).close()  # fail here, once, if the port is taken
    context = multiprocessing.get_context("spawn")
    stopping = False

    def start() -> BaseProcess:
        process = context.Process(target=_worker, args=(host, port), daemon=False)
        process.start()
        return process

    def stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    processes = [start() for _ in range(workers)]
    restarts: list[float] = []
    status = 0
    try:
        while not stopping:
            time.sleep(0.2)
            for i, process in enumerate(processes):
                if process.is_alive() or stopping:
                    continue
                now = time.monotonic()
                restarts = [t for t in restarts if now - t < 60] + [now]
                log.warning("worker exited; restarting", exitcode=process.exitcode)
                if len(restarts) > MAX_RESTARTS:
                    log.error("workers keep exiting; stopping", restarts=len(restarts))
                    stopping, status = True, 1
                    break
                processes[i] = start()
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: uvicorn finishes the requests in flight
        deadline = time.monotonic() + STOP_TIMEOUT
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return status
