"""Mapping cost of the event formats (no storage): HL7 v2 SIU messages and iCalendar opening
hours, timed in process on invented data, bounded in count.

    python bench/map_events.py --messages 5000 --practitioners 200 --days 30

Prints messages/s (SIU) and slots/s (iCalendar expansion + SAS resources); ``--append``
adds the figures to docs/perf.md.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from mappings import registry
from mappings.contract import MappingOptions

START = datetime(2026, 6, 1, 8, 0)


def siu_stream(count: int, practitioners: int) -> bytes:
    messages = []
    for n in range(count):
        rpps = f"{10000000000 + n % practitioners:011d}"
        when = START + timedelta(minutes=20 * (n // practitioners))
        event = ("S12", "S14", "S15")[n % 3]
        messages.append(
            f"MSH|^~\\&|AGENDA|CAB|SAS|REG|20260601000000||SIU^{event}|{n}|P|2.5.1|||||FRA|UTF-8\r"
            f"SCH||{n}^Bench||||100|||||^^20^{when:%Y%m%d%H%M%S}|||||{rpps}^TEST^BENCH\r"
            f"AIG|1|||{rpps}@449999999\r"
        )
    return "".join(messages).encode()


def calendar(practitioners: int) -> list[bytes]:
    return [
        (
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//bench//FR\r\nBEGIN:VEVENT\r\n"
            f"UID:open-{p}@bench\r\nORGANIZER:rpps:{10000000000 + p:011d}\r\n"
            "DTSTART;TZID=Europe/Paris:20260601T080000\r\n"
            "DTEND;TZID=Europe/Paris:20260601T200000\r\n"
            "RRULE:FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
        ).encode()
        for p in range(practitioners)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--practitioners", type=int, default=200)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--append", action="store_true", help="append to docs/perf.md")
    args = parser.parse_args()

    data = siu_stream(args.messages, args.practitioners)
    began = time.perf_counter()
    result = registry.mapper("hl7v2").map(data, MappingOptions())
    siu_seconds = time.perf_counter() - began
    assert not [i for i in result.issues if i.severity == "error"], result.issues[:3]
    siu = (
        f"{args.messages / siu_seconds:,.0f} messages/s ({args.messages:,} in {siu_seconds:.2f} s)"
    )

    options = MappingOptions(now=datetime(2026, 6, 1, tzinfo=UTC), window_days=args.days)
    ical = registry.mapper("ical")
    began = time.perf_counter()
    slots = sum(
        len(feed.slots)
        for body in calendar(args.practitioners)
        for feed in ical.map(body, options).feeds
    )
    ical_seconds = time.perf_counter() - began
    cal = f"{slots / ical_seconds:,.0f} slots/s ({slots:,} in {ical_seconds:.2f} s)"

    line = (
        f"`python bench/map_events.py --messages {args.messages} --practitioners "
        f"{args.practitioners} --days {args.days}`: hl7v2 SIU {siu}; ical opening hours "
        f"({args.practitioners} calendars, {args.days} days, 15-minute slots) {cal}."
    )
    print(line)
    if args.append:
        perf = Path(__file__).parents[1] / "docs" / "perf.md"
        stamp = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
        with perf.open("a") as out:
            out.write(f"\n## Event format mapping (no storage), run of {stamp}\n\n{line}\n")


if __name__ == "__main__":
    main()
