"""An in-process client on the real app, over the ``store`` fixture (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_server.app import create_app
from fhir_server.settings import Settings
from fhir_server.storage.port import Store

FHIR = "application/fhir+json"
BASE = "http://testserver"


REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference"
PACKAGES = REFERENCE / "fhir-packages"
NOS = REFERENCE / "nos"


@pytest.fixture
def settings() -> Settings:
    # The SAS package lives in the shared reference cache (no package registry here). No
    # audit trail: its AuditEvents would join the stored versions these tests count (it has
    # its own tests, test_audit.py).
    return Settings(
        max_body_bytes=1024 * 1024, package_path=PACKAGES, terminology_paths=[NOS], audit=False
    )


@pytest.fixture
async def client(store: Store, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, store=store)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5000))
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
            yield c


def schedule(res_id: str = "sched-1") -> dict[str, Any]:
    return {"resourceType": "Schedule", "id": res_id, "actor": [{"display": "Dr Hélène Lefèvre"}]}


async def put_schedules(client: httpx.AsyncClient, *ids: str) -> None:
    """Schedules that the Slots of a test reference: a Slot naming a Schedule that does not
    exist is refused (interactions/references.py)."""
    for res_id in ids:
        r = await client.put(
            f"/Schedule/{res_id}", json=schedule(res_id), headers={"Content-Type": FHIR}
        )
        assert r.status_code == 201, r.text


@pytest.fixture
async def sched_1(client: httpx.AsyncClient) -> None:
    """Schedule/sched-1, which ``slot()`` references."""
    await put_schedules(client, "sched-1")


def slot(start: str = "2026-06-12T16:20:00.000+02:00", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Slot",
        "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.10", "value": "slot-1"}],
        "schedule": {"reference": "Schedule/sched-1"},
        "status": "free",
        "start": start,
        "end": "2026-06-12T16:40:00.000+02:00",
    }
    body.update(extra)
    return body


def practitioner(rpps: str = "810001234567", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Practitioner",
        "identifier": [{"system": "urn:oid:1.2.250.1.71.4.2.1", "value": rpps}],
        "name": [{"family": "Lefèvre", "given": ["Hélène"]}],
    }
    body.update(extra)
    return body
