"""Mapping throughput of the pharmacy, manual-entry CSV and sas-fhir formats: slots mapped
per second by ``Mapper.map`` alone (parse + map + build, no validation, no storage), the
first stage of the ingest path whose whole-path target is 10,000 new slots/s.

    python bench/mapping_b.py --slots 20000 --rounds 3 [--append docs/perf.md]

Inputs are generated (invented pharmacies and practitioners), bounded by --slots; each
format is mapped --rounds times and the best round is kept.
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import UTC, datetime, timedelta

import orjson

from mappings import registry
from mappings.contract import MappingOptions

START = datetime(2026, 6, 15, 6, 0, tzinfo=UTC)
PLACE = {"line": "1 rue Haute", "postalCode": "35000", "city": "Rennes"}


def inputs(n: int) -> dict[str, tuple[bytes, MappingOptions]]:
    moments = [START + timedelta(minutes=5 * i) for i in range(n)]
    pharmacies = [f"ph-{i}" for i in range(max(1, n // 500))]
    table = {key: f"{10_000_000_000 + i:011d}" for i, key in enumerate(pharmacies)}
    pharmacy = MappingOptions(
        owner_key="ph-0", rpps_table=table, places=dict.fromkeys(pharmacies, PLACE)
    )
    mapharma: dict[str, list[object]] = {}
    for i, m in enumerate(moments):
        mapharma.setdefault(f"{m:%Y-%m-%d}", []).append({"id": i, "time": f"{m:%H:%M}"})
    valwin = {
        "result": [
            {
                "start": f"{m:%Y-%m-%dT%H:%M:%S}",
                "end": f"{m + timedelta(minutes=5):%Y-%m-%dT%H:%M:%S}",
                "timeDivisionId": f"d-{i}",
                "meetingConfigurationId": pharmacies[i % len(pharmacies)],
            }
            for i, m in enumerate(moments)
        ]
    }
    bimedoc = {"id": "ph-0", **{"street": "1 rue", "city": "Rennes", "postcode": "35000"}}
    bimedoc["slots"] = [{"datetime": f"{m:%Y-%m-%dT%H:%M:%SZ}"} for m in moments]  # type: ignore[assignment]
    header = "rpps;place;address;postal_code;city;date;start;end;duration;consultation;slot_type\n"
    rows = [
        f"{10_000_000_000 + i % 40:011d};Cabinet {i % 40};1 rue;35000;Rennes;"
        f"{m:%Y-%m-%d};{m:%H:%M};;5;AMB;PUBLIC\n"
        for i, m in enumerate(moments)
    ]
    return {
        "mapharma": (orjson.dumps(mapharma), pharmacy),
        "valwin": (orjson.dumps(valwin), pharmacy),
        "bimedoc": (orjson.dumps(bimedoc), pharmacy),
        "csv": (("".join([header, *rows])).encode(), MappingOptions()),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--slots", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--append")
    args = parser.parse_args()
    rows = []
    for fmt, (data, options) in inputs(min(args.slots, 200_000)).items():
        mapper = registry.mapper(fmt)
        best = float("inf")
        for _ in range(max(1, min(args.rounds, 10))):
            began = time.perf_counter()
            result = mapper.map(data, options)
            best = min(best, time.perf_counter() - began)
        slots = sum(len(f.slots) for f in result.feeds if not f.rejected)
        errors = [i for i in result.issues if i.severity == "error"]
        assert slots == args.slots and not errors, (fmt, slots, errors[:2])
        rows.append(f"| {fmt} | {slots:,} | {best * 1000:.0f} ms | **{slots / best:,.0f}** |")
        print(rows[-1], flush=True)
    if args.append:
        load = os.getloadavg()[0]
        when = f"{datetime.now(UTC):%Y-%m-%d %H:%M}"
        head = [
            f"\n## Mapping throughput, group B formats, run of {when} UTC\n",
            f"`python bench/mapping_b.py --slots {args.slots} --rounds {args.rounds}`: "
            "`Mapper.map` alone (read, localise, build the SAS resources; no validation, no "
            f"storage), best of the rounds. Load average {load:.2f} on 2 cores (another "
            "helper was testing).\n",
            "| format | slots | time | slots/s |",
            "| --- | --- | --- | --- |",
        ]
        with open(args.append, "a", encoding="utf-8") as out:
            out.write("\n".join([*head, *rows]) + "\n")


if __name__ == "__main__":
    main()
