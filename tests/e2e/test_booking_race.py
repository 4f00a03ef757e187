"""The booking race over real HTTP: two ``fhir-server serve`` processes on one PostgreSQL
(one process on SQLite, which serves a single process), 50 concurrent regulator clients
booking the same slot, three rounds with a cancel between them: exactly one 201 each round,
the others 409, one appointment stored, the slot busy and gone from the next SAS slot search
of both processes (availability caches included), then free and back after the cancel."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_server.core.fhirtime import utcnow
from tests.servers import BIN, run, serving, with_packages

pytestmark = pytest.mark.e2e
TYPE_CRENEAU = "https://mos.esante.gouv.fr/NOS/TRE_R314-TypeCreneau/FHIR/TRE-R314-TypeCreneau"
FHIR = {"Content-Type": "application/fhir+json"}
CLIENTS = 50
ROUNDS = 3


def seed(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """A Bundle of one Schedule and three future Slots (loaded as the server itself)."""
    start = utcnow().replace(second=0, microsecond=0) + timedelta(days=1)
    slots = []
    for i in range(3):
        begin = start + timedelta(minutes=20 * i)
        slots.append(
            {
                "resourceType": "Slot",
                "id": f"race-{i}",
                "meta": {"security": [{"system": TYPE_CRENEAU, "code": "PUBLIC"}]},
                "schedule": {"reference": "Schedule/race"},
                "status": "free",
                "start": begin.isoformat(),
                "end": (begin + timedelta(minutes=20)).isoformat(),
            }
        )
    schedule = {"resourceType": "Schedule", "id": "race", "actor": [{"display": "Dr Race"}]}
    entries = [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
        for r in (schedule, *slots)
    ]
    path = tmp_path / "seed.json"
    path.write_text(json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries}))
    return path, slots[1]


def appointment(slot: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Appointment",
        "status": "booked",
        "start": slot["start"],
        "end": slot["end"],
        "slot": [{"reference": f"Slot/{slot['id']}"}],
        "participant": [{"status": "accepted", "actor": {"display": "patient"}}],
    }


async def shown(client: httpx.AsyncClient, base: str, slot: dict[str, Any]) -> list[str]:
    """The slot ids the SAS slot search of ``base`` answers (the availability cache's shape)."""
    day = slot["start"][:10]
    r = await client.get(
        f"{base}/Slot?schedule=Schedule/race&start=ge{day}&start=le{day}T23:59:59Z"
        "&status=free&_include=Slot:schedule&_include:iterate=Schedule:actor"
    )
    assert r.status_code == 200, r.text
    return sorted(
        e["resource"]["id"]
        for e in r.json().get("entry", [])
        if e["resource"]["resourceType"] == "Slot"
    )


def test_exactly_one_winner_each_round(database_url: str, tmp_path: Path) -> None:
    env = with_packages(
        {
            **os.environ,
            "FHIR_DATABASE_URL": database_url,
            "FHIR_LOG_LEVEL": "warning",
            "FHIR_AUTH": "none",
            "FHIR_DEFAULT_ROLE": "regulator",
            "FHIR_AUDIT": "false",
        }
    )
    assert run([str(BIN / "fhir-server"), "migrate"], env).returncode == 0
    bundle, slot = seed(tmp_path)
    loaded = run([str(BIN / "fhir-server"), "load", str(bundle)], env)
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    if database_url.startswith("sqlite"):
        with serving(env, tmp_path / "a.log") as a:
            asyncio.run(rounds((a, a), slot))
        return
    with (
        serving(env, tmp_path / "a.log") as a,
        serving(env, tmp_path / "b.log") as b,
    ):
        asyncio.run(rounds((a, b), slot))


async def rounds(bases: tuple[str, str], slot: dict[str, Any]) -> None:
    limits = httpx.Limits(max_connections=CLIENTS)
    async with httpx.AsyncClient(timeout=60, limits=limits, headers=FHIR) as client:
        everyone = ["race-0", "race-1", "race-2"]
        for base in bases:  # the agendas are cached now
            assert await shown(client, base, slot) == everyone
        for _ in range(ROUNDS):
            results = await asyncio.gather(
                *(
                    client.post(f"{bases[i % 2]}/Appointment", json=appointment(slot))
                    for i in range(CLIENTS)
                )
            )
            codes = sorted(r.status_code for r in results)
            assert codes == [201] + [409] * (CLIENTS - 1), {r.status_code: r.text for r in results}
            booked = await client.get(
                f"{bases[0]}/Appointment?slot=Slot/{slot['id']}&status=booked"
            )
            assert booked.json()["total"] == 1, booked.text
            r = await client.get(f"{bases[1]}/Slot/{slot['id']}")
            assert r.json()["status"] == "busy"
            for base in bases:
                assert await shown(client, base, slot) == ["race-0", "race-2"]
            # the winner cancels: the slot is free again, on both processes
            won = next(r for r in results if r.status_code == 201).json()
            won["status"] = "cancelled"
            r = await client.put(f"{bases[1]}/Appointment/{won['id']}", json=won)
            assert r.status_code == 200, r.text
            for base in bases:
                assert await shown(client, base, slot) == everyone
