"""Pull mode's own cost into PostgreSQL: sources polled per second by one process when
each is new (fetch + map + validate + reconcile + store), unchanged but re-sent (200:
everything compared, nothing written), and unchanged with a 304 (claim, conditional GET,
record: the steady state of a quiet vendor), beside the same feeds through
``fhir_server.ingest.run.ingest`` directly (no HTTP, no lease) in the same run.

A throwaway PostgreSQL cluster (``procs.postgres``) and a loopback HTTP server in a thread
(``tests/ingest/pull/feeds.py``) serving ``--sources`` feeds of one practitioner with
``--slots`` slots each (the test-only simple format), with ETags. The HTTP server shares
the process (and its GIL) with the puller: the figures are a floor. A source's first poll
also creates its Endpoint. Printed, and written
into docs/pull.md (``## Figures``). A benchmark, not a test; only 127.0.0.1 is used;
every phase is bounded by the number of sources.

    python bench/pull.py                     # 200 sources x 20 slots, 4 polled at once
    python bench/pull.py --sources 400 --slots 50 --concurrency 4
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

import orjson
import procs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the test-only format and the loopback feed server

from fhir_server import logging as fhir_logging  # noqa: E402
from fhir_server.app import make_context, make_store  # noqa: E402
from fhir_server.core.caller import SYSTEM  # noqa: E402
from fhir_server.ingest.pull.config import PullSource  # noqa: E402
from fhir_server.ingest.pull.scheduler import Puller  # noqa: E402
from fhir_server.ingest.pull.state import states_of  # noqa: E402
from fhir_server.ingest.run import ingest  # noqa: E402
from fhir_server.settings import Settings  # noqa: E402
from mappings.contract import MappingOptions  # noqa: E402
from tests.ingest.pull.feeds import Route, feed_server  # noqa: E402
from tests.ingest.simple_format import NAME, SIMPLE, feed_json, person, slots  # noqa: E402

DOC = ROOT / "docs" / "pull.md"
REFERENCE = ROOT.parent / "shared" / "reference"
BOOKING = "https://rdv.example.org/book"


def feed(n: int, per: int, prefix: str) -> bytes:
    rpps = f"{ord(prefix[0]) % 10}{n:010d}"  # one practitioner (and RPPS) per prefix and n
    people = [person(f"{prefix}{n}", rpps, slots("2026-06-12", per, minutes=10))]
    return orjson.dumps(feed_json(people))


async def measure(url: str, count: int, per: int, concurrency: int) -> dict[str, float]:
    settings = Settings(
        database_url=url,
        package_path=REFERENCE / "fhir-packages",
        terminology_paths=[REFERENCE / "nos"],
        audit=False,
        statement_timeout_ms=0,
    )
    store = make_store(settings)
    ctx = make_context(settings, store)
    figures: dict[str, float] = {}
    try:
        with feed_server() as server:
            sources = []
            for n in range(count):
                server.routes[f"/s{n}.json"] = Route(feed(n, per, "p"), etag=f'"{n}-1"')
                sources.append(
                    PullSource(
                        name=f"s{n}",
                        url=server.url(f"/s{n}.json"),
                        format=NAME,
                        booking_url=BOOKING,
                        timeout=60,
                    )
                )
            puller = Puller(ctx, states_of(store), sources, 50_000_000, concurrency=concurrency)
            await puller.prepare()
            # warm up (profiles compiled on first use, connections opened): not timed
            warm = MappingOptions(source="warm", booking_url=BOOKING)
            await ingest(ctx.acting_for(SYSTEM), SIMPLE, feed(0, per, "w"), warm)
            phases = [("new", False, None), ("304", True, None), ("unchanged", True, "-2")]
            for phase, force, etag in phases:
                if etag:
                    for n in range(count):
                        server.routes[f"/s{n}.json"].etag = f'"{n}{etag}"'
                started = time.perf_counter()
                outcomes = await puller.run_once(force=force)
                figures[phase] = count / (time.perf_counter() - started)
                assert len(outcomes) == count and not [o for o in outcomes if o.error]
                assert not [o for o in outcomes if o.counts.get("rejected")]
            # the same feeds ingested directly (other practitioners: new)
            data = [feed(n, per, "q") for n in range(count)]
            started = time.perf_counter()
            for n, body in enumerate(data):
                options = MappingOptions(source=f"q{n}", booking_url=BOOKING)
                report = await ingest(ctx.acting_for(SYSTEM), SIMPLE, body, options)
                assert report.totals()["created"] == per + 3, report.totals()
            figures["direct"] = count / (time.perf_counter() - started)
    finally:
        await store.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", type=int, default=200)
    parser.add_argument("--slots", type=int, default=20, help="slots per source (<= 144)")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--no-doc", action="store_true", help="do not write docs/pull.md")
    args = parser.parse_args()
    fhir_logging.configure("error")
    bin_dir = procs.pg_bin_dir()
    if bin_dir is None:
        raise SystemExit("PostgreSQL binaries not found under /usr/lib/postgresql/*/bin")
    load_before = os.getloadavg()[0]
    with procs.postgres(bin_dir) as pg:
        procs.migrate(pg.url, ROOT)
        f = asyncio.run(measure(pg.url, args.sources, args.slots, args.concurrency))
        version = pg.version
    command = (
        f"python bench/pull.py --sources {args.sources} --slots {args.slots}"
        f" --concurrency {args.concurrency}"
    )
    lines = [
        f"{args.sources} sources x {args.slots} slots, {args.concurrency} polled at once,"
        f" PostgreSQL {version}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        f"pull, new:                  {f['new']:>7,.0f} sources/s"
        f" ({f['new'] * args.slots:,.0f} slots/s)",
        f"pull, unchanged (200):      {f['unchanged']:>7,.0f} sources/s"
        f" ({f['unchanged'] * args.slots:,.0f} slots/s)",
        f"pull, not modified (304):   {f['304']:>7,.0f} sources/s",
        f"ingest directly, new:       {f['direct']:>7,.0f} feeds/s (same run, no HTTP, no lease)",
        f"pull's own share on new feeds (HTTP, lease, state, Endpoint):"
        f" {max(0.0, 1 - f['new'] / f['direct']):.0%}",
        f"load average (1 min) before / after: {load_before:.2f} / {os.getloadavg()[0]:.2f}",
    ]
    print("\n".join(lines))
    if args.no_doc:
        return
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = DOC.read_text()
    marker = "\n## Figures\n"
    head = text.split(marker, 1)[0].rstrip("\n")
    figures = [
        marker.strip("\n"),
        "",
        f"Measured {now} with `{command}` (the last run; the machine is shared, see the load):",
        "",
        "```",
        *lines,
        "```",
        "",
    ]
    DOC.write_text(head + "\n\n" + "\n".join(figures))


if __name__ == "__main__":
    main()
