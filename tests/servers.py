"""Real ``fhir-server`` processes for tests: environment, free loopback port, start, wait
until it answers, stop. Shared by the end-to-end tests (tests/e2e, tests/ingest)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
REFERENCE_PACKAGES = ROOT.parent / "shared" / "reference" / "fhir-packages"


def with_packages(env: dict[str, str]) -> dict[str, str]:
    """Like ``scripts/run``: the reference package cache when it is beside the repository;
    without one, no profile validation (``serve`` refuses to start without the packages)."""
    if "FHIR_PACKAGE_PATH" not in env:
        if REFERENCE_PACKAGES.is_dir():
            env["FHIR_PACKAGE_PATH"] = str(REFERENCE_PACKAGES)
        else:
            env["FHIR_VALIDATE_PROFILES"] = "false"
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(
    args: list[str], env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def python_launch(*imports: str) -> list[str]:
    """The ``fhir-server`` command run by this Python after importing ``imports`` (e.g. a
    test-only format that registers itself)."""
    code = "".join(f"import {m}; " for m in imports)
    return [sys.executable, "-c", code + "from fhir_server.cli import main; main()"]


@dataclass
class Served:
    base: str
    proc: subprocess.Popen[bytes]
    log: Path


@contextmanager
def started(
    env: dict[str, str], log: Path, *extra: str, command: list[str] | None = None
) -> Iterator[Served]:
    """A ``serve`` process on a free loopback port (output in ``log``, ``extra`` arguments
    after the port), yielded once ``/metadata`` answers; stopped (or killed) after."""
    port = free_port()
    args = [*(command or [str(BIN / "fhir-server")]), "serve", "--host", "127.0.0.1"]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*args, "--port", str(port), *extra],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/metadata", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
            assert proc.poll() is None, log.read_text(errors="replace")
        else:
            pytest.fail(f"server did not start in 60 s:\n{log.read_text(errors='replace')}")
        yield Served(base, proc, log)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def serving(
    env: dict[str, str], log: Path, *extra: str, command: list[str] | None = None
) -> Iterator[str]:
    """``started``, yielding the base URL only."""
    with started(env, log, *extra, command=command) as served:
        yield served.base
