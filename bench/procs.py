"""Processes the benchmark starts and stops itself: server processes and a throwaway PostgreSQL.

Every wait here is bounded in time; everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

HOST = "127.0.0.1"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# The team's reference package cache beside the repository (no FHIR package registry here).
REFERENCE_PACKAGES = Path(__file__).resolve().parents[2] / "shared" / "reference" / "fhir-packages"


def package_env() -> dict[str, str]:
    """``FHIR_PACKAGE_PATH`` for a server under test: the caller's, else the reference cache
    when present (``serve`` refuses to start without the profile packages)."""
    path = os.environ.get("FHIR_PACKAGE_PATH")
    if not path and REFERENCE_PACKAGES.is_dir():
        path = str(REFERENCE_PACKAGES)
    return {"FHIR_PACKAGE_PATH": path} if path else {}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def children_cpu_seconds(parent: int) -> float:
    """CPU time of ``parent`` and its direct children (PostgreSQL's backends)."""
    total = cpu_seconds(parent)
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@dataclass
class Server:
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"


@contextmanager
def server(
    argv: list[str], env: Mapping[str, str], log: Path, *, port: int, ready_timeout: float = 60.0
) -> Iterator[Server]:
    """Start ``argv`` (a server listening on ``port``), wait for /metadata, stop it at the end."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT, cwd=log.parent
        )
    running = Server(port, process, log)
    try:
        _wait_ready(running, ready_timeout)
        yield running
    finally:
        stop(process)


def _wait_ready(running: Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / 0.1) + 1):
        if running.process.poll() is not None:
            raise RuntimeError(
                f"the server exited ({running.process.returncode}):\n{tail(running.log)}"
            )
        try:
            if (
                httpx.get(f"{running.base}/metadata", timeout=2.0, trust_env=False).status_code
                == 200
            ):
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    raise RuntimeError(f"the server did not answer within {timeout:.0f} s:\n{tail(running.log)}")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=15)


def fhir_server_command() -> list[str]:
    """``fhir-server`` from this environment (or ``python -m fhir_server.cli``)."""
    exe = shutil.which("fhir-server", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "fhir_server.cli"]


def fhir_server_argv(port: int) -> list[str]:
    """``fhir-server serve`` on 127.0.0.1 (one uvicorn process)."""
    return [*fhir_server_command(), "serve", "--host", HOST, "--port", str(port)]


# -- PostgreSQL -------------------------------------------------------------------------------


def migrate(url: str, cwd: Path) -> None:
    """``fhir-server migrate`` on ``url`` (a fresh benchmark database)."""
    done = subprocess.run(
        [*fhir_server_command(), "migrate"],
        env={**os.environ, "FHIR_DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )
    if done.returncode:
        raise RuntimeError(f"fhir-server migrate failed:\n{done.stdout}{done.stderr}")


def pg_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/N/bin`` holding initdb and pg_ctl."""
    found = [
        Path(p).parent
        for p in glob.glob("/usr/lib/postgresql/*/bin/pg_ctl")
        if Path(p).with_name("initdb").exists()
    ]
    found.sort(key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    return found[-1] if found else None


def pg_version(bin_dir: Path) -> str:
    out = subprocess.run(
        [str(bin_dir / "postgres"), "--version"], capture_output=True, text=True, timeout=30
    )
    return out.stdout.strip().removeprefix("postgres (PostgreSQL) ")  # "15.18 (Debian ...)"


@dataclass
class Postgres:
    url: str
    port: int
    data: Path
    version: str

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None


def _as_postgres(argv: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the ``postgres`` system user."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


@contextmanager
def postgres(bin_dir: Path, *, database: str = "fhir") -> Iterator[Postgres]:
    """A throwaway cluster on 127.0.0.1 (trust auth, default durability), removed at the end."""
    root = Path(tempfile.mkdtemp(prefix="fhir-bench-pg-", dir="/tmp"))
    data, log, sockets = root / "data", root / "postgres.log", root / "sockets"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        shutil.chown(sockets, "postgres", "postgres")
        root.chmod(0o755)
    port = free_port()
    run = {"check": True, "capture_output": True, "text": True, "cwd": "/"}
    started = False
    try:
        subprocess.run(
            _as_postgres(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--locale=C",
                ]
            ),
            timeout=120,
            **run,
        )
        options = f"-h {HOST} -p {port} -k {sockets} -c max_connections=100"
        subprocess.run(
            _as_postgres(
                [
                    str(bin_dir / "pg_ctl"),
                    "-D",
                    str(data),
                    "-l",
                    str(log),
                    "-o",
                    options,
                    "-w",
                    "-t",
                    "60",
                    "start",
                ]
            ),
            timeout=90,
            **run,
        )
        started = True
        subprocess.run(
            [str(bin_dir / "createdb"), "-h", HOST, "-p", str(port), "-U", "postgres", database],
            timeout=60,
            **run,
        )
        url = f"postgresql+asyncpg://postgres@{HOST}:{port}/{database}"
        yield Postgres(url, port, data, pg_version(bin_dir))
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"{exc.cmd[0]} failed: {exc.stderr}\n{tail(log)}") from exc
    finally:
        if started:
            subprocess.run(
                _as_postgres(
                    [
                        str(bin_dir / "pg_ctl"),
                        "-D",
                        str(data),
                        "-m",
                        "fast",
                        "-w",
                        "-t",
                        "60",
                        "stop",
                    ]
                ),
                timeout=90,
                capture_output=True,
                cwd="/",
            )
        shutil.rmtree(root, ignore_errors=True)
