"""The cost of booking at the owner first (docs/forwarding.md): forwarded bookings against a
loopback vendor (``tests/booking/vendor.py``, a threaded HTTP server in this process) over
HTTP and over mTLS: latency of one at a time (p50, p99), bookings per second with
``--concurrency`` in flight on distinct slots, and ``--racers`` regulators at once on one hot
slot (exactly one confirmed, the others refused: the owner decides). Forwarding only: no
database (the local write is the booking path's own figure). Each request opens its own
connection (and TLS handshake): what a booking pays. The vendor shares this process and
its GIL: the figures are a floor. Printed, and a section appended to docs/perf.md.
A benchmark, not a test; only 127.0.0.1 is used; every phase is bounded by its count.

    python bench/forward.py                       # 300 bookings, 16 at once, 50 racers
    python bench/forward.py --count 1000 --concurrency 32
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from rich.progress import Progress

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the loopback vendor and the test certificates

from fhir_server import logging as fhir_logging  # noqa: E402
from fhir_server.booking.forward import (  # noqa: E402
    KEY_SYSTEM,
    Limits,
    Owner,
    Refused,
    create,
    for_owner,
)
from tests.booking.test_forward import appointment  # noqa: E402
from tests.booking.vendor import Vendor, vendor_server  # noqa: E402
from tests.e2e.tls_support import make_certs  # noqa: E402

DOC = ROOT / "docs" / "perf.md"
LIMITS = Limits(timeout=10.0, retries=0, deadline=20.0)


@contextmanager
def owners(folder: Path, tls: bool) -> Iterator[tuple[Owner, Vendor]]:
    if not tls:
        with vendor_server() as vendor:
            yield Owner("bench", vendor.base), vendor
        return
    certs = make_certs(folder / "certs")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=certs.ca)
    context.load_cert_chain(certs.server.cert, certs.server.key)
    context.verify_mode = ssl.CERT_REQUIRED
    with vendor_server(context) as vendor:
        pair = certs.clients["valid"]
        yield Owner("bench", vendor.base, cert=pair.cert, key=pair.key, ca=certs.ca), vendor


async def book(owner: Owner, slot: str, n: int) -> tuple[float, bool]:
    key = {"system": KEY_SYSTEM, "value": f"urn:uuid:bench-{slot}-{n}"}
    began = time.perf_counter()
    try:
        await create(owner, for_owner(appointment(), slot, key), key, LIMITS)
        won = True
    except Refused:
        won = False
    return time.perf_counter() - began, won


async def sequential(owner: Owner, count: int, label: str) -> list[float]:
    times = []
    with Progress(transient=True) as progress:
        task = progress.add_task(f"{label}: one at a time", total=count)
        for n in range(count):
            took, won = await book(owner, f"seq-{n}", n)
            assert won
            times.append(took)
            progress.advance(task)
    return times


async def concurrent(owner: Owner, count: int, width: int, label: str) -> float:
    gate = asyncio.Semaphore(width)

    async def one(n: int) -> None:
        async with gate:
            _, won = await book(owner, f"con-{n}", n)
            assert won

    began = time.perf_counter()
    with Progress(transient=True) as progress:
        task = progress.add_task(f"{label}: {width} at once", total=count)
        pending = [asyncio.create_task(one(n)) for n in range(count)]
        for done in asyncio.as_completed(pending):
            await done
            progress.advance(task)
    return count / (time.perf_counter() - began)


async def race(owner: Owner, vendor: Vendor, racers: int) -> tuple[int, int, float]:
    began = time.perf_counter()
    results = await asyncio.gather(*(book(owner, "hot", n) for n in range(racers)))
    took = time.perf_counter() - began
    wins = sum(1 for _, won in results if won)
    return wins, vendor.created, took


def ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(count: int, width: int, racers: int) -> list[str]:
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for tls in (False, True):
            label = "mTLS" if tls else "HTTP"
            with owners(Path(folder), tls) as (owner, vendor):
                times = await sequential(owner, count, label)
                rate = await concurrent(owner, count, width, label)
                before = vendor.created
                wins, created, took = await race(owner, vendor, racers)
                assert wins == 1 and created - before == 1, (wins, created - before)
            rows.append(
                f"| {label} | {ms(times, 0.5):.1f} | {ms(times, 0.99):.1f} | "
                f"{statistics.mean(times) * 1000:.1f} | {rate:,.0f} | "
                f"{wins} of {racers} in {took * 1000:.0f} ms |"
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--racers", type=int, default=50)
    args = parser.parse_args()
    fhir_logging.configure("error")
    rows = asyncio.run(measure(args.count, args.concurrency, args.racers))
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M")
    section = "\n".join(
        [
            f"## Forwarded bookings, run of {stamp} UTC",
            "",
            f"`python bench/forward.py --count {args.count} --concurrency "
            f"{args.concurrency} --racers {args.racers}` on {platform.machine()}, "
            f"{os.cpu_count()} cores (shared), Python {platform.python_version()}: "
            "`POST /Appointment` to a loopback vendor (threaded, same process), a new "
            "connection per booking, no database.",
            "",
            "| transport | p50 ms | p99 ms | mean ms | bookings/s concurrent "
            "| hot slot: confirmed |",
            "| --- | --- | --- | --- | --- | --- |",
            *rows,
            "",
        ]
    )
    print(section)
    with DOC.open("a") as out:
        out.write("\n" + section)


if __name__ == "__main__":
    main()
