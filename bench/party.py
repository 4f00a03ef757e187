"""The cost of the party in a vendor's reads, on PostgreSQL (docs/booking.md, "The slot's
vendor and its appointments"):

A vendor's read clause was ``owner = me``; it is now ``owner = me OR (res_type =
'Appointment' AND party = me)``. Seeded: ``--vendors`` vendors, each owning
``--per-vendor`` Appointments (INT_R03) and party to as many booked by a regulator (owner
``regulation``), half booked, half cancelled. Timed, in alternating blocks of the same run:

1. ``Appointment?status=booked&_count=50`` as vendor 0 with the party clause (finds its own
   and its party ones), as vendor 0 with the former owner-only clause (its own only: a
   second store on the same database with that policy), and as the regulator (no clause).
2. A point read of one of vendor 0's party Appointments (SQL decides row by row).

A throwaway PostgreSQL cluster (``procs.postgres``); only 127.0.0.1. Printed and appended
to docs/perf.md. A benchmark, not a test; every phase is bounded by its count.

    python bench/party.py                                 # 20 vendors x 500, 200 searches
    python bench/party.py --vendors 50 --per-vendor 1000 --searches 400
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import perfdoc
import procs
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from auth.policy import Policy, ReadScope, Who  # noqa: E402
from fhir_server import logging as fhir_logging  # noqa: E402
from fhir_server.app import make_context  # noqa: E402
from fhir_server.core.caller import Caller  # noqa: E402
from fhir_server.core.fhirtime import utcnow  # noqa: E402
from fhir_server.interactions.read import read  # noqa: E402
from fhir_server.interactions.search import SearchRequest, search  # noqa: E402
from fhir_server.search.indexing.indexer import index_resource  # noqa: E402
from fhir_server.settings import Settings  # noqa: E402
from fhir_server.storage.port import Store, Stored  # noqa: E402
from fhir_server.storage.postgres import PostgresStore  # noqa: E402

CHUNK = 500  # rows per seeding transaction
BLOCK = 20  # searches per block; the arms alternate block by block
VENDOR = Caller(role="vendor", client_id="vendor-0")
REGULATOR = Caller(role="regulator", client_id="regulation")
QUERY = [("status", "booked"), ("_count", "50")]


class OwnerOnly(Policy):
    """The policy before the party: a vendor reads only the rows it owns."""

    def _read_scope(self, who: Who) -> ReadScope:
        return replace(super()._read_scope(who), party_types=frozenset())


def progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()
    )


def appointment(res_id: str, status: str) -> dict[str, Any]:
    return {
        "resourceType": "Appointment",
        "id": res_id,
        "status": status,
        "start": "2026-12-08T14:00:00+01:00",
        "end": "2026-12-08T14:20:00+01:00",
        "slot": [{"reference": f"Slot/{res_id}"}],
        "participant": [{"status": "accepted", "actor": {"display": "patient"}}],
    }


async def seed(store: Store, registry: Any, vendors: int, per_vendor: int) -> str:
    """The Appointments; the id of one that vendor 0 is party to."""
    rows: list[Stored] = []
    now = utcnow()
    for v in range(vendors):
        for i in range(per_vendor):
            status = "booked" if i % 2 == 0 else "cancelled"
            for kind, owner, party in (
                ("own", f"vendor-{v}", None),
                ("booked", "regulation", f"vendor-{v}"),
            ):
                res_id = f"{kind}-{v}-{i}"
                content = orjson.dumps(appointment(res_id, status))
                rows.append(
                    Stored(
                        "Appointment",
                        res_id,
                        1,
                        now,
                        False,
                        content,
                        "PUT",
                        None,
                        owner,
                        None,
                        party,
                    )
                )
    with progress() as bar:
        task = bar.add_task("seeding", total=len(rows))
        for start in range(0, len(rows), CHUNK):
            async with store.writing() as w:
                for row in rows[start : start + CHUNK]:
                    await w.put(row, index_resource(registry, orjson.loads(row.content)), None)
            bar.advance(task, min(CHUNK, len(rows) - start))
    return "booked-0-0"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(url: str, vendors: int, per_vendor: int, searches: int) -> dict[str, Any]:
    settings = Settings(
        database_url=url,
        validate_profiles=False,
        log_level="error",
        audit=False,
        statement_timeout_ms=0,
    )
    store = PostgresStore(url, pool_size=5)
    former = PostgresStore(url, pool_size=5, policy=OwnerOnly())
    try:
        base = make_context(settings, store)
        party_id = await seed(store, base.registry, vendors, per_vendor)
        old = replace(base, store=former)
        arms: dict[str, Callable[[], Awaitable[Any]]] = {}
        request = SearchRequest("Appointment", QUERY, "http://bench/fhir")
        for name, ctx in (
            ("vendor, owner or party", base.acting_for(VENDOR)),
            ("vendor, owner only (before)", old.acting_for(VENDOR)),
            ("regulator, no clause", base.acting_for(REGULATOR)),
        ):
            arms[name] = lambda c=ctx: search(c, request)
        vendor_ctx = base.acting_for(VENDOR)
        arms["vendor, point read of a party row"] = lambda: read(
            vendor_ctx, "Appointment", party_id
        )
        found = {}
        for name, run in arms.items():  # warm-up, and what each arm finds
            result = await run()
            if hasattr(result, "body"):
                found[name] = orjson.loads(result.body).get("total")
            for _ in range(10):
                await run()
        took: dict[str, list[float]] = {name: [] for name in arms}
        with progress() as bar:
            task = bar.add_task("requests (all arms)", total=len(arms) * searches)
            for _ in range(searches // BLOCK):
                for name, run in arms.items():
                    for _ in range(BLOCK):
                        started = time.perf_counter()
                        await run()
                        took[name].append((time.perf_counter() - started) * 1000)
                    bar.advance(task, BLOCK)
        return {"took": took, "found": found}
    finally:
        await store.close()
        await former.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vendors", type=int, default=20)
    parser.add_argument("--per-vendor", type=int, default=500)
    parser.add_argument("--searches", type=int, default=200, help="requests per arm")
    args = parser.parse_args()
    fhir_logging.configure("error")
    bin_dir = procs.pg_bin_dir()
    if bin_dir is None:
        raise SystemExit("PostgreSQL binaries not found (install Debian's postgresql)")
    with procs.postgres(bin_dir) as pg:
        procs.migrate(pg.url, ROOT)
        figures = asyncio.run(measure(pg.url, args.vendors, args.per_vendor, args.searches))
    total = 2 * args.vendors * args.per_vendor
    lines = [
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores,"
        f" load {os.getloadavg()[0]:.1f}; PostgreSQL {procs.pg_version(bin_dir)}",
        f"{total} Appointments: {args.vendors} vendors x {args.per_vendor} owned + as many"
        " booked on their slots (party); half booked",
    ]
    for name, values in figures["took"].items():
        total_found = figures["found"].get(name)
        shown = f", total {total_found}" if total_found is not None else ""
        lines.append(
            f"{name}: p50 {statistics.median(values):.2f} ms, p99 {pct(values, 0.99):.2f} ms"
            f" ({len(values)} requests{shown})"
        )
    for line in lines:
        print(line)
    command = "python bench/party.py " + " ".join(sys.argv[1:])
    perfdoc.append_run("Party (a vendor's read clause)", command.strip(), lines)


if __name__ == "__main__":
    main()
