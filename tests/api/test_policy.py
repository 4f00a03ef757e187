"""The access policy through the API, with real client-certificate identities (FHIR_AUTH=on,
reverse-proxy mode: the certificate arrives in a trusted proxy's header), on both engines.

``test_every_cell_of_the_table`` checks each role x interaction x type cell of
``Policy().table()`` (docs/policy.md) against what the API answers; the other tests are the
issue's bad inputs: each refused with a clear OperationOutcome and nothing changed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from auth import devcerts
from auth.policy import INTERACTIONS, READS, ROLES, TYPES, Policy
from fhir_server.app import create_app
from fhir_server.core.fhirtime import utcnow
from fhir_server.core.types import SERVED_TYPES
from fhir_server.settings import Settings
from fhir_server.storage.port import Store
from tests.api.conftest import BASE, FHIR

HEADER = "X-SSL-Client-Cert"
TYPE_CRENEAU = "https://mos.esante.gouv.fr/NOS/TRE_R314-TypeCreneau/FHIR/TRE-R314-TypeCreneau"
# identity -> (role, client id); the certificate's CN is the identity, its OU "SAS"
IDENTITIES = {
    "vendor": ("vendor", "agenda-a"),
    "vendor-b": ("vendor", "agenda-b"),
    "regulator": ("regulator", "regulation-sw"),
    "platform": ("platform", "sas-platform"),
    "admin": ("admin", "admin-tool"),
}
JSON_PATCH = "application/json-patch+json"


@pytest.fixture(scope="module")
def certificates() -> dict[str, dict[str, str]]:
    """Request headers presenting each identity's certificate (as nginx passes it on)."""
    ca = devcerts.new_ca()
    return {
        name: {
            HEADER: quote(devcerts.client_cert(ca, name, "SAS").cert_pem().decode()),
            "X-SSL-Client-Verify": "SUCCESS",
            "Content-Type": FHIR,
        }
        for name in IDENTITIES
    }


def policy_settings(**extra: Any) -> Settings:
    rules = [
        {"cn": name, "ou": "SAS", "client_id": client, "role": role}
        for name, (role, client) in IDENTITIES.items()
    ]
    return Settings(
        auth="on",
        client_cert_header=HEADER,
        client_certificates=rules,
        validate_profiles=False,
        **extra,
    )


class Api:
    def __init__(
        self, client: httpx.AsyncClient, headers: dict[str, dict[str, str]], app: Any
    ) -> None:
        self.client = client
        self.headers = headers
        self.app = app
        self.slots = 0

    async def seed(self, res_type: str, res_id: str) -> None:
        """A resource no client wrote: as the admin, or (AuditEvent, which no client writes)
        as the server itself."""
        if res_type != "AuditEvent":
            seeded = await self.send(
                "admin", "PUT", f"/{res_type}/{res_id}", body(res_type, res_id)
            )
            assert seeded.status_code == 201, seeded.text
            return
        from fhir_server.core.caller import SYSTEM
        from fhir_server.interactions import update

        server = self.app.state.wiring.ctx.acting_for(SYSTEM)
        await update.update(server, res_type, res_id, body(res_type, res_id))

    async def send(
        self, who: str, method: str, url: str, body: Any = None, **headers: str
    ) -> httpx.Response:
        sent = {**self.headers[who], **headers}
        appointment = isinstance(body, dict) and body.get("resourceType") == "Appointment"
        if who == "regulator" and appointment:
            body = await self.bookable(body)
        return await self.client.request(method, url, json=body, headers=sent)

    async def bookable(self, appointment: dict[str, Any]) -> dict[str, Any]:
        """A regulator's Appointment books a slot (docs/booking.md): a fresh free future Slot
        of Schedule/sched, seeded by the admin, for each one sent."""
        self.slots += 1
        start = utcnow().replace(microsecond=0) + timedelta(days=2, minutes=20 * self.slots)
        end = start + timedelta(minutes=20)
        times = {"start": start.isoformat(), "end": end.isoformat()}
        slot_id = f"bookable-{self.slots}"
        r = await self.send("admin", "PUT", f"/Slot/{slot_id}", body("Slot", slot_id, **times))
        assert r.status_code == 201, r.text
        return {**appointment, **times, "slot": [{"reference": f"Slot/{slot_id}"}]}


@pytest.fixture
async def api(store: Store, certificates: dict[str, dict[str, str]]) -> AsyncIterator[Api]:
    app = create_app(policy_settings(), store=store)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5000))
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
            yield Api(c, certificates, app)


def body(res_type: str, res_id: str | None = None, **extra: Any) -> dict[str, Any]:
    """A valid R4 resource of each served type (the Slots reference Schedule/sched)."""
    shapes: dict[str, dict[str, Any]] = {
        "Appointment": {"status": "booked", "participant": [{"status": "accepted"}]},
        "AuditEvent": {
            "type": {"code": "rest"},
            "recorded": "2026-06-12T10:00:00+02:00",
            "agent": [{"requestor": True}],
            "source": {"observer": {"display": "fhir-server"}},
        },
        "Endpoint": {
            "status": "active",
            "connectionType": {"code": "hl7-fhir-rest"},
            "payloadType": [{"text": "any"}],
            "address": "https://agenda.example/fhir",
        },
        "Schedule": {"actor": [{"display": "Dr Hélène Lefèvre"}]},
        "Slot": {
            "meta": {"security": [{"system": TYPE_CRENEAU, "code": "PUBLIC"}]},
            "schedule": {"reference": "Schedule/sched"},
            "status": "free",
            "start": "2026-06-12T16:20:00.000+02:00",
            "end": "2026-06-12T16:40:00.000+02:00",
        },
        "Subscription": {
            "status": "requested",
            "reason": "policy test",
            "criteria": "Appointment?status=booked",
            "channel": {"type": "rest-hook", "endpoint": "http://127.0.0.1:9/hook"},
        },
    }
    out: dict[str, Any] = {"resourceType": res_type, **shapes.get(res_type, {}), **extra}
    if res_id is not None:
        out["id"] = res_id
    return out


def assert_forbidden(r: httpx.Response, *words: str) -> None:
    assert r.status_code == 403, r.text
    outcome = r.json()
    assert outcome["resourceType"] == "OperationOutcome"
    text = outcome["issue"][0]["diagnostics"]
    assert outcome["issue"][0]["code"] == "forbidden"
    assert all(w in text for w in words), text


def test_the_policy_knows_the_served_types() -> None:
    assert set(TYPES) == set(SERVED_TYPES)


# -- the table, cell by cell ---------------------------------------------------------------


def expected_cells(role: str) -> dict[tuple[str, str], str]:
    """(type, interaction) -> Y / own / labels / - as docs/policy.md shows them."""
    table = Policy().table()
    section = table.split(f"## {role}\n", 1)[1].split("\n## ", 1)[0]
    cells: dict[tuple[str, str], str] = {}
    for line in section.splitlines():
        parts = [p.strip() for p in line.strip("|").split("|")]
        if len(parts) == len(INTERACTIONS) + 1 and parts[0] in TYPES:
            for interaction, cell in zip(INTERACTIONS, parts[1:], strict=True):
                # "own, party": own here (nothing seeded is booked on the caller's slots;
                # the party's cells are tests/interactions/test_party.py's)
                cells[(parts[0], interaction)] = "own" if cell == "own, party" else cell
    assert len(cells) == len(TYPES) * len(INTERACTIONS)
    return cells


async def check_cell(
    api: Api, who: str, res_type: str, interaction: str, cell: str, mine: str | None
) -> str | None:
    """Do ``interaction`` on ``res_type`` as ``who``; a description of what differs from
    ``cell``, or None. ``other`` is a resource ``who`` did not write (the admin's),
    ``mine`` one it did (None: it may not create any)."""
    other = f"{res_type.lower()}-seeded"
    url = f"/{res_type}/{other}"
    if interaction in READS:
        requests = {
            "read": ("GET", url, None),
            "vread": ("GET", f"{url}/_history/1", None),
            "search": ("GET", f"/{res_type}?_id={other}", None),
            "history": ("GET", f"{url}/_history", None),
            "operation": ("POST", f"/{res_type}/$validate", body(res_type)),
        }
        method, target, payload = requests[interaction]
        r = await api.send(who, method, target, payload)
        if cell == "-":
            return None if r.status_code == 403 else f"{r.status_code}, wanted 403"
        if r.status_code != 200 and not (cell == "own" and r.status_code == 404):
            return f"{r.status_code} {r.text[:200]}"
        if interaction == "search":
            found = [e["resource"]["id"] for e in r.json().get("entry", [])]
            wanted = [] if cell == "own" else [other]  # the seeded Slot is PUBLIC
            return None if found == wanted else f"found {found}, wanted {wanted}"
        if cell == "own" and interaction != "operation":
            if r.status_code != 404:
                return f"{r.status_code}: another's resource shown"
            mine_url = f"/{res_type}/{mine}"
            own = {"read": mine_url, "vread": f"{mine_url}/_history/1"}.get(
                interaction, f"{mine_url}/_history"
            )
            r = await api.send(who, "GET", own)
            return None if r.status_code == 200 else f"own: {r.status_code}"
        return None
    if interaction == "create":
        r = await api.send(who, "POST", f"/{res_type}", body(res_type))
        wanted = 403 if cell == "-" else 201
        return None if r.status_code == wanted else f"{r.status_code}, wanted {wanted}"
    # update, patch, delete: of another's resource, then of its own
    requests = {
        "update": ("PUT", body(res_type, other)),
        "patch": ("PATCH", [{"op": "add", "path": "/language", "value": "fr"}]),
        "delete": ("DELETE", None),
    }
    method, payload = requests[interaction]
    extra = {"Content-Type": JSON_PATCH} if method == "PATCH" else {}
    r = await api.send(who, method, url, payload, **extra)
    wanted = {"-": 403, "own": 403, "Y": 204 if method == "DELETE" else 200}[cell]
    if r.status_code != wanted:
        return f"{r.status_code} {r.text[:200]}, wanted {wanted}"
    if cell == "own":
        assert mine is not None
        if method == "PUT":
            payload = body(res_type, mine)
        r = await api.send(who, method, f"/{res_type}/{mine}", payload, **extra)
        wanted = 204 if method == "DELETE" else 200
        return None if r.status_code == wanted else f"own: {r.status_code}, wanted {wanted}"
    return None


@pytest.mark.parametrize("role", ROLES)
async def test_every_cell_of_the_table(api: Api, role: str) -> None:
    cells = expected_cells(role)
    schedule = await api.send("admin", "PUT", "/Schedule/sched", body("Schedule", "sched"))
    assert schedule.status_code == 201, schedule.text
    wrong: list[str] = []
    # deletions last: they remove what the other interactions act on
    order = [i for i in INTERACTIONS if i != "delete"] + ["delete"]
    for res_type in TYPES:
        other = f"{res_type.lower()}-seeded"
        await api.seed(res_type, other)
        mine: str | None = None
        if cells[(res_type, "create")] != "-":
            mine = f"{res_type.lower()}-{role}"
            r = await api.send(role, "PUT", f"/{res_type}/{mine}", body(res_type, mine))
            assert r.status_code == 201, r.text
        for interaction in order:
            cell = cells[(res_type, interaction)]
            problem = await check_cell(api, role, res_type, interaction, cell, mine)
            if problem is not None:
                wrong.append(f"{role} {interaction} {res_type} ({cell}): {problem}")
    assert wrong == []


# -- the bad inputs ------------------------------------------------------------------


async def vendor_b_data(api: Api) -> None:
    for res_type, res_id in (("Schedule", "sched"), ("Slot", "slot-b")):
        r = await api.send("vendor-b", "PUT", f"/{res_type}/{res_id}", body(res_type, res_id))
        assert r.status_code == 201, r.text


async def test_a_vendor_cannot_change_another_vendors_slot(api: Api) -> None:
    await vendor_b_data(api)
    before = (await api.send("vendor-b", "GET", "/Slot/slot-b")).json()
    changed = body("Slot", "slot-b", status="busy")
    assert_forbidden(await api.send("vendor", "PUT", "/Slot/slot-b", changed), "vendor", "Slot")
    patch = [{"op": "replace", "path": "/status", "value": "busy"}]
    assert_forbidden(
        await api.send("vendor", "PATCH", "/Slot/slot-b", patch, **{"Content-Type": JSON_PATCH})
    )
    assert_forbidden(await api.send("vendor", "DELETE", "/Slot/slot-b"))
    # invisible to it: 404, its existence not revealed
    assert (await api.send("vendor", "GET", "/Slot/slot-b")).status_code == 404
    after = (await api.send("vendor-b", "GET", "/Slot/slot-b")).json()
    assert after == before  # nothing changed, not even the version


async def test_a_transaction_deleting_another_vendors_schedule_changes_nothing(api: Api) -> None:
    await vendor_b_data(api)
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": body("Schedule"), "request": {"method": "POST", "url": "Schedule"}},
            {"request": {"method": "DELETE", "url": "Schedule/sched"}},
        ],
    }
    r = await api.send("vendor", "POST", "/", bundle)
    assert_forbidden(r, "delete", "Schedule/sched")
    assert "Bundle.entry[1]" in r.json()["issue"][0].get("expression", [""])[0]
    assert (await api.send("vendor-b", "GET", "/Schedule/sched")).status_code == 200
    mine = await api.send("vendor", "GET", "/Schedule")
    assert mine.json()["total"] == 0  # the POST of the same transaction was not kept
    # in a batch, the entry alone is refused
    bundle["type"] = "batch"
    r = await api.send("vendor", "POST", "/", bundle)
    statuses = [e["response"]["status"] for e in r.json()["entry"]]
    assert statuses == ["201 Created", "403 Forbidden"]


async def test_a_regulator_cannot_create_a_slot(api: Api) -> None:
    await vendor_b_data(api)
    r = await api.send("regulator", "POST", "/Slot", body("Slot"))
    assert_forbidden(r, "regulator", "create", "Slot")
    everything = await api.send("admin", "GET", "/Slot?_summary=count")
    assert everything.json()["total"] == 1


async def test_includes_never_reach_another_vendors_data(api: Api) -> None:
    await vendor_b_data(api)  # vendor B's Schedule/sched and its Slot slot-b
    # vendor A's own Slot on B's Schedule (the reference exists: it may name it)
    r = await api.send("vendor", "PUT", "/Slot/slot-a", body("Slot", "slot-a"))
    assert r.status_code == 201, r.text
    found = await api.send("vendor", "GET", "/Slot?_include=Slot:schedule")
    entries = [e["resource"]["id"] for e in found.json()["entry"]]
    assert entries == ["slot-a"]  # B's Schedule is not included
    # B's Schedule from B's side: A's Slot is not revincluded
    found = await api.send("vendor-b", "GET", "/Schedule?_revinclude=Slot:schedule")
    assert sorted(e["resource"]["id"] for e in found.json()["entry"]) == ["sched", "slot-b"]
    history = await api.send("vendor", "GET", "/_history")
    assert [e["resource"]["id"] for e in history.json()["entry"]] == ["slot-a"]


async def test_regulators_see_only_the_slot_types_of_their_role(api: Api) -> None:
    await vendor_b_data(api)  # slot-b: PUBLIC
    cpts = body("Slot", "slot-cpts", meta={"security": [{"system": TYPE_CRENEAU, "code": "CPTS"}]})
    assert (await api.send("vendor-b", "PUT", "/Slot/slot-cpts", cpts)).status_code == 201
    assert (await api.send("regulator", "GET", "/Slot/slot-cpts")).status_code == 404
    assert (await api.send("regulator", "GET", "/Slot/slot-b")).status_code == 200
    query = "/Slot?schedule=Schedule/sched&start=ge2026-06-12&status=free&_include=Slot:schedule"
    found = await api.send("regulator", "GET", query)
    assert [e["resource"]["id"] for e in found.json()["entry"]] == ["slot-b", "sched"]
    found = await api.send("regulator", "GET", "/Schedule?_revinclude=Slot:schedule")
    assert sorted(e["resource"]["id"] for e in found.json()["entry"]) == ["sched", "slot-b"]
    found = await api.send("platform", "GET", query)
    assert sorted(e["resource"]["id"] for e in found.json()["entry"]) == [
        "sched",
        "slot-b",
        "slot-cpts",
    ]


async def test_slot_visibility_follows_the_setting(
    store: Store, certificates: dict[str, dict[str, str]]
) -> None:
    settings = policy_settings(slot_visibility={"regulator": ["CPTS"]})
    app = create_app(settings, store=store)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5000))
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
            api = Api(c, certificates, app)
            await vendor_b_data(api)  # PUBLIC
            assert (await api.send("regulator", "GET", "/Slot/slot-b")).status_code == 404


def test_a_bad_slot_visibility_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown label"):
        Settings(slot_visibility={"regulator": ["PUBLIK"]})
    with pytest.raises(ValueError, match="vendor"):
        Settings(slot_visibility={"vendor": ["PUBLIC"]})


async def test_a_deleted_resource_stays_its_owners(api: Api) -> None:
    await vendor_b_data(api)
    assert (await api.send("vendor-b", "DELETE", "/Slot/slot-b")).status_code == 204
    r = await api.send("vendor", "PUT", "/Slot/slot-b", body("Slot", "slot-b"))
    assert_forbidden(r, "Slot/slot-b")
    r = await api.send("vendor-b", "PUT", "/Slot/slot-b", body("Slot", "slot-b"))
    assert r.status_code == 201, r.text  # its owner may bring it back
    history = await api.send("vendor-b", "GET", "/Slot/slot-b/_history")
    assert history.json()["total"] == 3
    assert (await api.send("vendor", "GET", "/Slot/slot-b/_history")).status_code == 404


async def test_identifiers_are_unique_among_what_the_writer_sees(api: Api) -> None:
    rpps = {"identifier": [{"system": "urn:oid:1.2.250.1.71.4.2.1", "value": "810001234567"}]}
    for who in ("vendor", "vendor-b"):  # each vendor its own copy of the directory
        r = await api.send(who, "POST", "/Practitioner", body("Practitioner", **rpps))
        assert r.status_code == 201, r.text
    again = await api.send("vendor", "POST", "/Practitioner", body("Practitioner", **rpps))
    assert again.status_code == 422 and again.json()["issue"][0]["code"] == "duplicate"
    platform = await api.send("platform", "POST", "/Practitioner", body("Practitioner", **rpps))
    assert platform.status_code == 422  # the platform sees every holder


async def test_conditional_interactions_match_only_the_callers_resources(api: Api) -> None:
    await vendor_b_data(api)
    ident = {"identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.10", "value": "slot-1"}]}
    r = await api.send("vendor-b", "PUT", "/Slot/slot-b", body("Slot", "slot-b", **ident))
    assert r.status_code == 200, r.text
    # If-None-Exist does not find (nor return) B's Slot: A creates its own
    r = await api.send(
        "vendor",
        "POST",
        "/Slot",
        body("Slot", **ident),
        **{"If-None-Exist": "identifier=urn:oid:1.2.250.1.213.1.4.10|slot-1"},
    )
    assert r.status_code == 201, r.text
    assert r.json()["id"] != "slot-b"
    # a conditional update of that identifier updates A's own Slot, not B's
    url = "/Slot?identifier=urn:oid:1.2.250.1.213.1.4.10|slot-1"
    r = await api.send("vendor", "PUT", url, body("Slot", status="busy", **ident))
    assert r.status_code == 200, r.text
    assert r.json()["id"] != "slot-b"
    assert (await api.send("vendor-b", "GET", "/Slot/slot-b")).json()["status"] == "free"
    # a conditional delete does not reach B's either
    assert (await api.send("vendor", "DELETE", url)).status_code == 204
    assert (await api.send("vendor-b", "GET", "/Slot/slot-b")).status_code == 200
