"""The booking tests' API: the real app with client-certificate identities per role (the
policy tests' setup), over the ``store`` fixture (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from fhir_server.app import create_app
from fhir_server.core.fhirtime import utcnow
from fhir_server.storage.port import Store
from tests.api.conftest import BASE
from tests.api.test_policy import Api, body, certificates, policy_settings

__all__ = ["certificates"]  # the fixture, imported for these tests

SCHEDULES = ("sched", "sched-2")


@pytest.fixture
async def api(store: Store, certificates: dict[str, dict[str, str]]) -> AsyncIterator[Api]:
    app = create_app(policy_settings(), store=store)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5000))
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
            api = Api(c, certificates, app)
            for res_id in SCHEDULES:
                r = await api.send("admin", "PUT", f"/Schedule/{res_id}", body("Schedule", res_id))
                assert r.status_code == 201, r.text
            yield api


def at(hours: float) -> datetime:
    """An instant ``hours`` from now, to the minute (future slots stay future in any run)."""
    return utcnow().replace(second=0, microsecond=0) + timedelta(hours=hours)


async def put_slot(
    api: Api,
    res_id: str,
    start: datetime,
    *,
    minutes: int = 20,
    status: str = "free",
    schedule: str = "sched",
) -> dict[str, Any]:
    end = start + timedelta(minutes=minutes)
    slot = body(
        "Slot",
        res_id,
        start=start.isoformat(),
        end=end.isoformat(),
        status=status,
        schedule={"reference": f"Schedule/{schedule}"},
    )
    r = await api.client.put(f"/Slot/{res_id}", json=slot, headers=api.headers["admin"])
    assert r.status_code in (200, 201), r.text
    stored: dict[str, Any] = r.json()
    return stored


def booking(*slots: dict[str, Any], status: str = "booked", **extra: Any) -> dict[str, Any]:
    """An Appointment of these stored slots, its times theirs."""
    out: dict[str, Any] = {
        "resourceType": "Appointment",
        "status": status,
        "participant": [{"status": "accepted", "actor": {"display": "patient"}}],
    }
    if slots:
        out["slot"] = [{"reference": f"Slot/{s['id']}"} for s in slots]
        out["start"] = min(s["start"] for s in slots)
        out["end"] = max(s["end"] for s in slots)
    out.update(extra)
    return out


async def send(api: Api, who: str, method: str, url: str, payload: Any = None, **h: str) -> Any:
    """A request as ``who`` without the policy tests' automatic slot (``Api.send`` adds one to
    a regulator's Appointment that has none)."""
    return await api.client.request(method, url, json=payload, headers={**api.headers[who], **h})


async def slot_status(api: Api, res_id: str) -> tuple[str, str]:
    r = await send(api, "admin", "GET", f"/Slot/{res_id}")
    assert r.status_code == 200, r.text
    return r.json()["status"], r.json()["meta"]["versionId"]


async def appointments(api: Api) -> list[dict[str, Any]]:
    r = await send(api, "admin", "GET", "/Appointment?_count=100")
    assert r.status_code == 200, r.text
    return [e["resource"] for e in r.json().get("entry", [])]
