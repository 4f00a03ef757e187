"""The outbox's cost and speed on PostgreSQL (docs/delivery.md):

1. Appointment creates per second through the write path (profile validation on), with the
   SAS outbox hook (each create also queues its message) and without, in alternating
   blocks of the same run: the ratio is the outbox's cost on a write.
2. Delivery throughput: the messages queued in 1. sent by one sender (``FHIR_DELIVERY_BATCH``
   at once) to a loopback HTTPS receiver with mutual TLS (``tests/delivery/receiver.py`` in
   its own process: Python's threaded HTTP server, the figure is a floor).
3. Latency from the commit to the platform's 2xx recorded, when the writing process's
   sender is woken by the commit (its tick set to 30 s, so only the wake can explain a
   fast delivery): one appointment at a time, p50 / p99 / max.

A throwaway PostgreSQL cluster (``procs.postgres``); only 127.0.0.1. Printed and appended
to docs/perf.md. A benchmark, not a test; every phase is bounded by ``--writes``.

    python bench/delivery.py                 # 1,000 writes per arm, 200 latency samples
    python bench/delivery.py --writes 2000 --samples 300
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import perfdoc
import procs
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the loopback receiver and the test appointments

from fhir_server import logging as fhir_logging  # noqa: E402
from fhir_server.app import make_context, make_sender, make_store  # noqa: E402
from fhir_server.core.caller import SYSTEM  # noqa: E402
from fhir_server.interactions import create  # noqa: E402
from fhir_server.settings import Settings  # noqa: E402
from tests.delivery.appointments import SYSTEM as ID_SYSTEM  # noqa: E402
from tests.delivery.appointments import sas_appointment  # noqa: E402
from tests.delivery.receiver import Pki, make_pki  # noqa: E402
from tests.servers import free_port  # noqa: E402

REFERENCE = ROOT.parent / "shared" / "reference"
BLOCK = 100  # writes per block; the arms alternate block by block


def progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()
    )


class Remote:
    """The receiver's process: its URL and how many it received (``GET /count``)."""

    def __init__(self, pki: Pki, port: int) -> None:
        self.pki = pki
        self.url = f"https://127.0.0.1:{port}"
        context = ssl.create_default_context(cafile=str(pki.ca))
        context.load_cert_chain(pki.client_cert, pki.client_key)
        self.client = httpx.AsyncClient(verify=context, timeout=10)

    async def count(self) -> int:
        return int((await self.client.get(f"{self.url}/count")).json()["received"])


async def measure(url: str, receiver: Remote, writes: int, samples: int) -> dict[str, float]:
    pki = receiver.pki
    settings = Settings(
        database_url=url,
        package_path=REFERENCE / "fhir-packages",
        terminology_paths=[REFERENCE / "nos"] if (REFERENCE / "nos").is_dir() else [],
        log_level="error",
        audit=False,
        statement_timeout_ms=0,
        sas_appointments_url=receiver.url,
        sas_client_cert=pki.client_cert,
        sas_client_key=pki.client_key,
        sas_ca_file=pki.ca,
        sas_identifier_system=ID_SYSTEM,
        delivery_tick=30.0,
    )
    store = make_store(settings)
    out: dict[str, float] = {}
    sender = make_sender(settings, store)
    assert sender is not None
    try:
        # the commit's moment (the write path wakes the sender once it has committed) and
        # the moment a 2xx is recorded (the platform has the message): no polling
        stamps: dict[str, float] = {}

        def wake() -> None:
            stamps["committed"] = time.perf_counter()
            sender.wake()

        settle = sender.queue.settle

        async def settled(outcomes: Any) -> list[bool]:
            kept = await settle(outcomes)
            stamps.setdefault("received", time.perf_counter())
            return kept

        sender.queue.settle = settled  # type: ignore[method-assign]
        with_outbox = make_context(settings, store, wake).acting_for(SYSTEM)
        without = replace(with_outbox, write_hooks=())
        # warm-up: compiled profiles, connections, statement caches
        for i in range(20):
            await create.create(without, "Appointment", sas_appointment(f"warm-{i}"))
        took = {"with": 0.0, "without": 0.0}
        with progress() as bar:
            task = bar.add_task("writes (both arms)", total=2 * writes)
            for block in range(writes // BLOCK):
                for arm, ctx in (("with", with_outbox), ("without", without)):
                    started = time.perf_counter()
                    for i in range(BLOCK):
                        value = f"{arm}-{block}-{i}"
                        await create.create(ctx, "Appointment", sas_appointment(value))
                    took[arm] += time.perf_counter() - started
                    bar.advance(task, BLOCK)
        done = (writes // BLOCK) * BLOCK
        out["writes"] = done
        out["with"] = done / took["with"]
        out["without"] = done / took["without"]

        started = time.perf_counter()
        total = await sender.run_once()
        elapsed = time.perf_counter() - started
        received = await receiver.count()
        if total.sent != done or received != done:
            raise RuntimeError(f"sent {total.sent}, received {received} of {done}")
        out["delivered"] = done / elapsed

        # latency: commit -> receipt, the sender woken by the commit
        sender.start()
        latencies: list[float] = []
        with progress() as bar:
            task = bar.add_task("latency samples", total=samples)
            for i in range(samples):
                stamps.clear()
                await create.create(with_outbox, "Appointment", sas_appointment(f"lat-{i}"))
                deadline = time.perf_counter() + 10
                while "received" not in stamps:  # set by this event loop's sender task
                    if time.perf_counter() > deadline:
                        raise RuntimeError(f"sample {i}: nothing received within 10 s")
                    await asyncio.sleep(0.0002)
                latencies.append(stamps["received"] - stamps["committed"])
                bar.advance(task)
        latencies.sort()
        out["p50"] = statistics.median(latencies) * 1000
        out["p99"] = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
        out["max"] = latencies[-1] * 1000
    finally:
        await sender.stop()
        await store.close()
        await receiver.client.aclose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writes", type=int, default=1000, help="creates per arm (x100)")
    parser.add_argument("--samples", type=int, default=200, help="latency samples")
    parser.add_argument("--no-doc", action="store_true", help="do not append to docs/perf.md")
    args = parser.parse_args()
    fhir_logging.configure("error")
    bin_dir = procs.pg_bin_dir()
    if bin_dir is None:
        raise SystemExit("PostgreSQL binaries not found under /usr/lib/postgresql/*/bin")
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="fhir-bench-pki-") as tmp:
        pki = make_pki(Path(tmp))
        port = free_port()
        remote = subprocess.Popen(
            [sys.executable, "-m", "tests.delivery.receiver", tmp, str(port)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        try:
            assert remote.stdout is not None and remote.stdout.readline().strip() == b"ready"
            with procs.postgres(bin_dir) as pg:
                procs.migrate(pg.url, ROOT)
                receiver = Remote(pki, port)
                figures = asyncio.run(measure(pg.url, receiver, args.writes, args.samples))
                version = pg.version
        finally:
            remote.communicate(timeout=30)  # closes its stdin: it stops
    command = f"python bench/delivery.py --writes {args.writes} --samples {args.samples}"
    ratio = figures["with"] / figures["without"]
    lines = [
        f"{int(figures['writes']):,} Appointment creates per arm (FrAppointmentSAS validated),"
        f" PostgreSQL {version}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        f"creates with the SAS outbox:    {figures['with']:>8,.0f} /s",
        f"creates without (same run):     {figures['without']:>8,.0f} /s   ratio {ratio:.2f}",
        f"delivered to a loopback mTLS receiver, one sender: {figures['delivered']:>6,.0f}"
        " messages/s",
        f"commit -> 2xx recorded, woken sender ({args.samples} samples): p50"
        f" {figures['p50']:.1f} ms, p99 {figures['p99']:.1f} ms, max {figures['max']:.1f} ms",
        f"load average (1 min) before / after: {load_before:.2f} / {os.getloadavg()[0]:.2f}"
        f" on {os.cpu_count()} CPUs (other processes share the machine)",
    ]
    print("\n".join(lines))
    if args.no_doc:
        return
    perfdoc.append_run("Delivery (outbox, SAS push)", command, lines)


if __name__ == "__main__":
    main()
