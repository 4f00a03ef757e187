"""Ingestion into PostgreSQL through the whole path: parse -> map -> validate -> reconcile ->
store with index rows; new slots/s and unchanged slots/s, beside the server's plain
transaction path in the same run.

A throwaway PostgreSQL cluster (``procs.postgres``: initdb/pg_ctl on 127.0.0.1, default
durability, removed at the end), migrated. In process, as ``fhir-server ingest`` runs (the
server itself, SAS profile validation on, the reference package cache):

- ``new``: one feed file of ``--practitioners`` x ``--slots`` slots in the test-only simple
  format (``tests/ingest/simple_format.py``), first ingest: every resource created;
- ``unchanged``: the same bytes again: every resource compared, nothing written (found by
  reading, ``fhir_server/ingest/precheck.py``);
- ``1 changed``: the same practitioners with their first slot typed PRO: no feed is
  unchanged, each goes through the write path and updates one slot;
- ``transaction``: the same shape of data for other practitioners (another vendor prefix),
  mapped once outside the timing, then written as one FHIR transaction Bundle of ``PUT``
  entries per practitioner through ``interactions/transaction.process``: the server's plain
  write path, new resources;
- ``map only``: the mapper alone over the feed (parse -> map), for the share of the cost.

Printed and appended to ``docs/perf.md``. A benchmark, not a test; only 127.0.0.1 is used;
every phase is bounded by the data size given.

    python bench/ingest.py                                  # 200 practitioners x 50 slots
    python bench/ingest.py --practitioners 400 --slots 50
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import procs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.ingest.simple_format: the benchmark's format

from fhir_server import logging as fhir_logging  # noqa: E402
from fhir_server.app import make_context, make_store  # noqa: E402
from fhir_server.core.caller import SYSTEM  # noqa: E402
from fhir_server.ingest.run import ingest  # noqa: E402
from fhir_server.interactions import transaction  # noqa: E402
from fhir_server.settings import Settings  # noqa: E402
from mappings.contract import MappingOptions  # noqa: E402
from tests.ingest.simple_format import SIMPLE, feed_json, person, slots  # noqa: E402

DOC = ROOT / "docs" / "perf.md"
REFERENCE = ROOT.parent / "shared" / "reference"
DAY = "2026-06-12"
BOOKING = "https://rdv.example.org/book"


def feed_bytes(practitioners: int, per: int, offset: int, *, one_changed: bool = False) -> bytes:
    """``one_changed``: the first slot of every practitioner is a PRO slot, not PUBLIC."""
    people = [
        person(f"p{n}", f"1{n:010d}", slots(DAY, per, minutes=max(1, 720 // per)))
        for n in range(offset, offset + practitioners)
    ]
    if one_changed:
        for p in people:
            p["slots"][0]["types"] = ["PRO"]
    return orjson.dumps(feed_json(people, window=(DAY, "2026-06-13")))


def bundles(data: bytes, options: MappingOptions) -> list[dict[str, Any]]:
    """One transaction Bundle per practitioner: its resources and slots as PUT entries."""
    out = []
    for feed in SIMPLE.map(data, options).feeds:
        entries = [
            {
                "fullUrl": f"{r['resourceType']}/{r['id']}",
                "resource": r,
                "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
            }
            for r in [*feed.resources, *feed.slots]
        ]
        out.append({"resourceType": "Bundle", "type": "transaction", "entry": entries})
    return out


async def measure(url: str, practitioners: int, per: int) -> dict[str, float]:
    settings = Settings(
        database_url=url,
        package_path=REFERENCE / "fhir-packages",
        terminology_paths=[REFERENCE / "nos"] if (REFERENCE / "nos").is_dir() else [],
        log_level="error",
        audit=False,
        statement_timeout_ms=0,
    )
    store = make_store(settings)
    ctx = make_context(settings, store).acting_for(SYSTEM)
    total = practitioners * per
    out: dict[str, float] = {"slots": total}
    try:
        data = feed_bytes(practitioners, per, 0)
        options = MappingOptions(source="bench.json", booking_url=BOOKING)
        started = time.perf_counter()
        SIMPLE.map(data, options)
        out["map"] = total / (time.perf_counter() - started)
        for phase in ("new", "unchanged"):
            started = time.perf_counter()
            report = await ingest(ctx, SIMPLE, data, options)
            took = time.perf_counter() - started
            totals = report.totals()
            expected = "created" if phase == "new" else "unchanged"
            if totals[expected] != total + 3 * practitioners or totals["rejected"]:
                raise RuntimeError(f"{phase}: unexpected report {totals}")
            out[phase] = total / took
        # Every practitioner has one changed slot: no feed is found unchanged by reading,
        # each goes through the write path (locks, comparison, one update).
        changed = feed_bytes(practitioners, per, 0, one_changed=True)
        started = time.perf_counter()
        totals = (await ingest(ctx, SIMPLE, changed, options)).totals()
        if totals["updated"] != practitioners or totals["rejected"]:
            raise RuntimeError(f"one changed: unexpected report {totals}")
        out["one_changed"] = total / (time.perf_counter() - started)
        plain = bundles(
            feed_bytes(practitioners, per, practitioners),
            MappingOptions(source="tx", vendor="tx", booking_url=BOOKING),
        )
        started = time.perf_counter()
        for bundle in plain:
            await transaction.process(ctx, bundle, "urn:bench", return_resources=False)
        out["transaction"] = total / (time.perf_counter() - started)
    finally:
        await store.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--practitioners", type=int, default=200)
    parser.add_argument("--slots", type=int, default=50, help="slots per practitioner (<= 720)")
    parser.add_argument("--no-doc", action="store_true", help="do not append to docs/perf.md")
    args = parser.parse_args()
    fhir_logging.configure("error")
    bin_dir = procs.pg_bin_dir()
    if bin_dir is None:
        raise SystemExit("PostgreSQL binaries not found under /usr/lib/postgresql/*/bin")
    load_before = os.getloadavg()[0]
    with procs.postgres(bin_dir) as pg:
        procs.migrate(pg.url, ROOT)
        figures = asyncio.run(measure(pg.url, args.practitioners, args.slots))
        version = pg.version
    command = f"python bench/ingest.py --practitioners {args.practitioners} --slots {args.slots}"
    lines = [
        f"slots per phase: {int(figures['slots']):,} ({args.practitioners} practitioners x"
        f" {args.slots}), PostgreSQL {version}, {os.cpu_count()} CPUs, Python"
        f" {platform.python_version()}",
        f"ingest, new slots:        {figures['new']:>9,.0f} slots/s (goal >= 10,000)",
        f"ingest, unchanged slots:  {figures['unchanged']:>9,.0f} slots/s (goal >= 50,000)",
        f"ingest, 1 changed of {args.slots}:   {figures['one_changed']:>9,.0f} slots/s"
        " (every feed through the write path)",
        f"plain transaction (PUT):  {figures['transaction']:>9,.0f} slots/s (baseline, same run)",
        f"mapper alone (parse+map): {figures['map']:>9,.0f} slots/s",
        f"load average (1 min) before / after: {load_before:.2f} / {os.getloadavg()[0]:.2f}"
        f" on {os.cpu_count()} CPUs (other processes share the machine)",
    ]
    print("\n".join(lines))
    if args.no_doc:
        return
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    ratio = figures["new"] / figures["transaction"]
    row = (
        f"| ingest into PostgreSQL, {int(figures['slots']):,} slots, validated |"
        f" new {figures['new']:,.0f} slots/s, unchanged {figures['unchanged']:,.0f} slots/s"
        f" (goals 10,000 / 50,000), 1 changed of {args.slots} {figures['one_changed']:,.0f}"
        f" slots/s | plain transaction of PUTs {figures['transaction']:,.0f}"
        f" slots/s: new is **{ratio:.2f}x** | `{command}` | {now[:10]} |"
    )
    text = DOC.read_text()
    marker = "\n## How the benchmarks run"
    doc_lines = text.split("\n")
    mine = [i for i, line in enumerate(doc_lines) if line.startswith("| ingest into PostgreSQL")]
    if mine:  # the current-figures line of this benchmark: replaced by the latest run
        doc_lines[mine[0]] = row
        text = "\n".join(line for i, line in enumerate(doc_lines) if i not in mine[1:])
    elif marker in text:
        text = text.replace(marker, row + "\n" + marker, 1)
    section = "\n".join(
        [f"\n## Ingest run of {now}", "", f"- command: `{command}`", "", "```", *lines, "```", ""]
    )
    DOC.write_text(text.rstrip("\n") + "\n" + section)


if __name__ == "__main__":
    main()
