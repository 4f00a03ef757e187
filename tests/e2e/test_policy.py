"""The access policy end to end: a real ``fhir-server serve`` over HTTPS with FHIR_AUTH=on,
real handshakes over loopback, each system known by its client certificate (CN, OU -> client
id and role), on SQLite and PostgreSQL.

Vendor A's Slot cannot be changed by vendor B (403, nothing changed) nor seen by it (404);
a regulator cannot create a Slot and sees only the slot types of its role.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from auth import devcerts
from tests.e2e.test_serve import with_packages
from tests.e2e.tls_support import Certs, Pair, make_certs, tls_env, tls_serving

pytestmark = pytest.mark.e2e
TYPE_CRENEAU = "https://mos.esante.gouv.fr/NOS/TRE_R314-TypeCreneau/FHIR/TRE-R314-TypeCreneau"
SYSTEMS = {  # certificate CN -> (client id, role); every OU is "SAS"
    "editeur-a": ("agenda-a", "vendor"),
    "editeur-b": ("agenda-b", "vendor"),
    "regulation": ("regulation-sw", "regulator"),
}
FHIR = {"Content-Type": "application/fhir+json"}


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[tuple[str, Certs]]:
    certs = make_certs(tmp_path / "certs")
    ca = devcerts.load_ca(certs.ca.read_bytes(), (certs.directory / "ca.key").read_bytes())
    for cn in SYSTEMS:
        pair = Pair(certs.directory / f"{cn}.pem", certs.directory / f"{cn}.key")
        devcerts.client_cert(ca, cn, "SAS").write(pair.cert, pair.key)
        certs.clients[cn] = pair
    rules = [{"cn": cn, "ou": "SAS", "client_id": c, "role": r} for cn, (c, r) in SYSTEMS.items()]
    env = tls_env(
        certs,
        with_packages(
            {**os.environ, "FHIR_DATABASE_URL": database_url, "FHIR_LOG_LEVEL": "warning"}
        ),
    )
    env["FHIR_CLIENT_CERTIFICATES"] = json.dumps(rules)
    with tls_serving(env, certs, tmp_path / "server.log", "--migrate") as base:
        yield base, certs


def client(server: tuple[str, Certs], who: str) -> httpx.Client:
    base, certs = server
    return httpx.Client(base_url=base, verify=certs.client_context(who), timeout=30)


def slot(res_id: str, code: str) -> dict[str, Any]:
    return {
        "resourceType": "Slot",
        "id": res_id,
        "meta": {"security": [{"system": TYPE_CRENEAU, "code": code}]},
        "schedule": {"reference": "Schedule/sched-a"},
        "status": "free",
        "start": "2026-06-12T16:20:00.000+02:00",
        "end": "2026-06-12T16:40:00.000+02:00",
    }


def test_owners_and_slot_labels_over_mutual_tls(server: tuple[str, Certs]) -> None:
    with (
        client(server, "editeur-a") as a,
        client(server, "editeur-b") as b,
        client(server, "regulation") as regulator,
    ):
        schedule = {"resourceType": "Schedule", "id": "sched-a", "actor": [{"display": "Dr A"}]}
        assert a.put("/Schedule/sched-a", json=schedule, headers=FHIR).status_code == 201
        for res_id, code in (("slot-public", "PUBLIC"), ("slot-cpts", "CPTS")):
            r = a.put(f"/Slot/{res_id}", json=slot(res_id, code), headers=FHIR)
            assert r.status_code == 201, r.text
        before = a.get("/Slot/slot-public").json()

        r = b.put("/Slot/slot-public", json={**slot("slot-public", "PUBLIC"), "status": "busy"})
        assert r.status_code == 403, r.text
        assert r.json()["issue"][0]["code"] == "forbidden"
        assert "Slot/slot-public" in r.json()["issue"][0]["diagnostics"]
        assert b.get("/Slot/slot-public").status_code == 404
        assert a.get("/Slot/slot-public").json() == before

        r = regulator.post("/Slot", json=slot("x", "PUBLIC"), headers=FHIR)
        assert r.status_code == 403 and "regulator" in r.json()["issue"][0]["diagnostics"]
        found = regulator.get("/Slot?schedule=Schedule/sched-a&_include=Slot:schedule").json()
        ids = sorted(e["resource"]["id"] for e in found["entry"])
        assert ids == ["sched-a", "slot-public"]  # the CPTS slot is not a regulator's
        assert regulator.get("/Slot/slot-cpts").status_code == 404
