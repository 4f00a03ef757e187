"""JSON vendor mappers: slots mapped per second, beside the SAS builders alone.

For each of doctolib, keldoc, maiia, ordoclic and avecmondoc, one input of ``--slots``
slots in the vendor's real shape (generated: 10 practitioners, 10-minute slots from
2026-04-01, invented keys) is mapped ``--rounds`` times in process, single thread. The
baseline, measured in the same run, builds the same number of Slots with ``mappings.sas``
directly (ids, SAS instants, booking URL: the floor of any mapper), so the ratio is what
reading the vendor's JSON costs on top. Best round reported, wall and CPU time; the load
average is printed (machines here are shared). Nothing is written.

    python bench/mapping_json.py
    python bench/mapping_json.py --slots 50000 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from mappings import registry, sas
from mappings.contract import MappingOptions

BASE = datetime(2026, 4, 1, 6, 0, tzinfo=UTC)
STEP = timedelta(minutes=10)
PEOPLE = 10


def starts(n: int) -> list[datetime]:
    return [BASE + STEP * i for i in range(n)]


def z(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def days_of(moments: list[datetime]) -> list[str]:
    first, last = moments[0].date(), moments[-1].date()
    return [str(first + timedelta(days=d)) for d in range((last - first).days + 1)]


def maiia(n: int) -> Any:
    moments = starts(n)
    items = [
        {
            "id": f"a{i}",
            "practitionerId": f"p{i % PEOPLE}",
            "centerId": "c1",
            "consultationReasonId": "r1",
            "startDateTime": z(m),
            "endDateTime": z(m + STEP),
        }
        for i, m in enumerate(moments)
    ]
    window = {"from": z(moments[0]), "to": z(moments[-1] + STEP)}
    return {"availabilities": {"items": items, "total": n}, **window}


def ordoclic(n: int) -> Any:
    moments = starts(n)
    slots = [
        {
            "id": f"s{i}",
            "isRepeated": False,
            "timeStart": z(m),
            "timeEnd": z(m + STEP),
            "reasonIDs": [],
            "status": {"statusID": 0},
            "calendarId": "cal1",
            "medicalStaffID": f"p{i % PEOPLE}",
        }
        for i, m in enumerate(moments)
    ]
    window = {"dateStart": z(moments[0]), "dateEnd": z(moments[-1] + STEP)}
    return {"slots": {"slots": slots}, "request": window}


def avecmondoc(n: int) -> Any:
    moments = starts(n)
    slots = [
        {
            "businessHours": {
                "id": i,
                "start": z(m),
                "end": z(m + STEP),
                "extendedProps": {"doctorId": i % PEOPLE, "organizationId": 1, "type": "inOffice"},
            },
            "isAvailable": True,
        }
        for i, m in enumerate(moments)
    ]
    return [{"start": z(moments[0]), "end": z(moments[-1] + STEP), "slots": slots}]


def keldoc(n: int) -> Any:
    moments = starts(n)
    by_day: dict[str, list[Any]] = {d: [] for d in days_of(moments)}
    for i, m in enumerate(moments):
        by_day[str(m.date())].append(
            {"start_time": m.strftime("%Y-%m-%dT%H:%M:%S.000000+0000"), "agenda_id": i % PEOPLE}
        )
    return {"availabilities": by_day}


def doctolib(n: int) -> Any:
    moments = starts(n)
    by_day: dict[str, list[str]] = {d: [] for d in days_of(moments)}
    for m in moments:
        by_day[str(m.date())].append(m.strftime("%Y-%m-%dT%H:%M:%S.000+00:00"))
    booking = {"data": {"agendas": [{"id": 1, "visit_motive_ids_by_practice_id": {"9": [1]}}]}}
    days = [{"date": d, "slots": s} for d, s in by_day.items()]
    return {"booking": booking, "availabilities": {"availabilities": days}}


INPUTS: dict[str, Callable[[int], Any]] = {
    "doctolib": doctolib,
    "keldoc": keldoc,
    "maiia": maiia,
    "ordoclic": ordoclic,
    "avecmondoc": avecmondoc,
}


def builders(n: int) -> Callable[[], int]:
    """The baseline: the same number of Slots built with ``mappings.sas`` directly."""
    moments = starts(n)

    def run() -> int:
        out = [
            sas.slot("bench", "sched", f"s{i}", m, m + STEP, sas_zone, booking_url=URL)
            for i, m in enumerate(moments)
        ]
        return len(out)

    return run


URL = "https://rdv.example.org/sas"
sas_zone = MappingOptions().timezone


def best(run: Callable[[], int], rounds: int) -> tuple[float, float, int]:
    """(best wall seconds, best CPU seconds, slots) over ``rounds``."""
    walls, cpus, count = [], [], 0
    for _ in range(rounds):
        wall, cpu = time.perf_counter(), time.process_time()
        count = run()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus), count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    n, rounds = min(args.slots, 200_000), min(args.rounds, 20)  # bounded
    print(f"load average before: {os.getloadavg()[0]:.2f}; {n:,} slots, best of {rounds}")
    wall, cpu, count = best(builders(n), rounds)
    floor = count / cpu
    print(f"| SAS builders alone (baseline) | {count / wall:,.0f} | {floor:,.0f} | 1.00 |")
    table = {f"p{i}": f"1000000{i:04d}" for i in range(PEOPLE)} | {
        str(i): f"1000000{i:04d}" for i in range(PEOPLE)
    }
    options = MappingOptions(rpps_table=table, booking_url=URL)
    for name, make in INPUTS.items():
        data = json.dumps(make(n)).encode()
        mapper = registry.mapper(name)

        def run(data: bytes = data, mapper: Any = mapper) -> int:
            result = mapper.map(data, options)
            assert not [i for i in result.issues if i.severity == "error"], result.issues[:3]
            return sum(len(f.slots) for f in result.feeds)

        wall, cpu, count = best(run, rounds)
        assert count == n, (name, count)
        print(f"| {name} | {count / wall:,.0f} | {count / cpu:,.0f} | {count / cpu / floor:.2f} |")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
