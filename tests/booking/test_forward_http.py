"""End to end over real HTTP: a ``serve`` process (SQLite and PostgreSQL) pulls a loopback
vendor's slots, and a regulator's ``POST /Appointment`` on one is booked at the vendor
first, then here; the vendor's refusal comes back as 409 with its reason, nothing stored."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson

from tests.booking.pulled import tomorrow
from tests.booking.test_forward_booking import booking
from tests.booking.vendor import Vendor, searchset, vendor_server
from tests.servers import BIN, run, serving, with_packages

FHIR = {"Content-Type": "application/fhir+json"}


def environment(url: str, tmp_path: Path, vendor_base: str) -> dict[str, str]:
    sources = tmp_path / "sources.json"
    source = {
        "name": "agenda",
        "url": vendor_base + "/fhir",
        "format": "sas-fhir",
        "vendor": "agenda",
        "rpps": ["10000000015"],
        "booking_url": "https://rdv.example.org/book",
        "timeout": 5,
        "interval": 3600,
    }
    sources.write_bytes(orjson.dumps({"sources": [source]}))
    env = with_packages(
        {
            **os.environ,
            "FHIR_DATABASE_URL": url,
            "FHIR_AUTH": "none",
            "FHIR_DEFAULT_ROLE": "regulator",
            "FHIR_ACCESS_LOG": "false",
            "FHIR_AUDIT": "false",
            "FHIR_AVAILABILITY_PRELOAD": "false",
            "FHIR_PULL_SOURCES": str(sources),
            "FHIR_PULL_TICK": "0.2",
            "FHIR_FORWARD_TIMEOUT": "2",
            "FHIR_FORWARD_DEADLINE": "4",
            "FHIR_FORWARD_BACKOFF": "0.05",
        }
    )
    migrated = run([str(BIN / "fhir-server"), "migrate"], env)
    assert migrated.returncode == 0, migrated.stderr
    return env


def slot(base: str, rid: str) -> dict[str, Any] | None:
    answer = httpx.get(f"{base}/Slot/agenda-slot-{rid}", timeout=10)
    return orjson.loads(answer.content) if answer.status_code == 200 else None


@contextmanager
def pulled_server(database_url: str, tmp_path: Path) -> Iterator[tuple[Vendor, str]]:
    """A loopback vendor with slots v-1 and v-2, and a serve process that pulls them (once
    its first poll has stored them)."""
    with vendor_server() as vendor:
        vendor.searchset = searchset({"v-1": tomorrow(9), "v-2": tomorrow(10)})
        env = environment(database_url, tmp_path, vendor.base)
        with serving(env, tmp_path / "serve.log") as base:
            deadline = time.monotonic() + 60
            while slot(base, "v-2") is None:  # the first poll, in the serve process
                assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
                time.sleep(0.2)
            yield vendor, base


def test_a_regulator_books_a_pulled_slot_at_its_owner_first(
    database_url: str, tmp_path: Path
) -> None:
    with pulled_server(database_url, tmp_path) as (vendor, base):
        made = httpx.post(
            f"{base}/Appointment",
            content=orjson.dumps(booking("v-1", "h1")),
            headers=FHIR,
            timeout=30,
        )
        assert made.status_code == 201, made.text
        assert list(vendor.taken) == ["v-1"] and vendor.created == 1
        assert (slot(base, "v-1") or {}).get("status") == "busy"

        vendor.taken["v-2"] = "someone at the vendor's"
        refused = httpx.post(
            f"{base}/Appointment",
            content=orjson.dumps(booking("v-2", "h2")),
            headers=FHIR,
            timeout=30,
        )
        assert refused.status_code == 409, refused.text
        said = orjson.loads(refused.content)
        assert said["resourceType"] == "OperationOutcome"
        assert "le créneau v-2 est déjà réservé" in said["issue"][0]["diagnostics"]
        assert (slot(base, "v-2") or {}).get("status") == "free"
        found = httpx.get(f"{base}/Appointment", params={"identifier": "h2"}, timeout=10)
        assert orjson.loads(found.content).get("total", 0) == 0


def test_a_slow_owner_holds_no_other_booking_back(database_url: str, tmp_path: Path) -> None:
    """The owner of v-1 answers after 1 s: a booking of v-2 sent meanwhile is answered
    first (the owner is asked with no write transaction open)."""
    with pulled_server(database_url, tmp_path) as (vendor, base):
        vendor.script, vendor.delay = ["slow"], 1.0
        finished: list[tuple[str, int]] = []

        def book(rid: str) -> None:
            answer = httpx.post(
                f"{base}/Appointment",
                content=orjson.dumps(booking(rid, f"s-{rid}")),
                headers=FHIR,
                timeout=30,
            )
            finished.append((rid, answer.status_code))  # list.append: thread-safe

        slow = threading.Thread(target=book, args=("v-1",))
        slow.start()
        for _ in range(500):  # until the vendor has the slow POST (bounded)
            if vendor.count("POST") >= 1:
                break
            time.sleep(0.02)
        book("v-2")
        slow.join(timeout=30)
        assert finished == [("v-2", 201), ("v-1", 201)]
        assert set(vendor.taken) == {"v-1", "v-2"}
        assert (slot(base, "v-1") or {}).get("status") == "busy"
