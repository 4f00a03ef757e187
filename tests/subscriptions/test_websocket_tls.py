"""The websocket channel over TLS with a client certificate (``serve`` with FHIR_TLS_*):
the upgrade is authenticated by the certificate like any request (the TLS extension
reaches the websocket's scope too), a bound client is pinged; without a certificate the
upgrade is refused."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.e2e.tls_support import Certs, make_certs, tls_env, tls_serving
from tests.servers import with_packages

pytestmark = pytest.mark.e2e
FHIR = {"Content-Type": "application/fhir+json"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Certs]]:
    tmp = tmp_path_factory.mktemp("wss")
    certs = make_certs(tmp / "certs")
    env = tls_env(
        certs,
        with_packages(
            {
                **os.environ,
                "FHIR_DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/fhir.sqlite",
                "FHIR_LOG_LEVEL": "warning",
                "FHIR_AUDIT": "false",
                "FHIR_VALIDATE_PROFILES": "false",
            }
        ),
    )
    with tls_serving(env, certs, Path(tmp) / "server.log") as base:
        yield base, certs


def test_a_client_certificate_binds_and_is_pinged(server: tuple[str, Certs]) -> None:
    base, certs = server
    tls = certs.client_context("valid")
    with httpx.Client(base_url=base, verify=tls, headers=FHIR, timeout=10) as http:
        body = {
            "resourceType": "Subscription",
            "status": "requested",
            "reason": "wss",
            "criteria": "Appointment?status=booked",
            "channel": {"type": "websocket"},
        }
        r = http.post("/Subscription", json=body)
        assert r.status_code == 201, r.text
        sub = r.json()["id"]
        url = base.replace("https://", "wss://") + "/$subscription-websocket"
        booking = {
            "resourceType": "Appointment",
            "status": "booked",
            "start": "2026-06-12T16:20:00+02:00",
            "end": "2026-06-12T16:40:00+02:00",
            "participant": [{"actor": {"display": "Dr Wss"}, "status": "accepted"}],
        }

        async def scenario() -> tuple[str, str]:
            async with connect(url, ssl=tls, open_timeout=10) as ws:
                await ws.send(f"bind {sub}")
                bound = str(await asyncio.wait_for(ws.recv(), 5))
                made = await asyncio.to_thread(http.post, "/Appointment", json=booking)
                assert made.status_code == 201, made.text
                return bound, str(await asyncio.wait_for(ws.recv(), 5))

        assert asyncio.run(scenario()) == (f"bound {sub}", f"ping {sub}")


def test_without_a_certificate_the_upgrade_is_refused(server: tuple[str, Certs]) -> None:
    base, certs = server
    url = base.replace("https://", "wss://") + "/$subscription-websocket"

    async def scenario() -> None:
        async with connect(url, ssl=certs.client_context(None), open_timeout=10):
            pass

    with pytest.raises(InvalidStatus) as refused:
        asyncio.run(scenario())
    assert refused.value.response.status_code == 403
