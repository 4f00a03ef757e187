"""SAS regulator accounts (flow INT_R02): the test kit's section 5, step by step, in order.

The official kit (``shared/reference/sas-guide/TEST-KIT.md``, section 5) runs its regulator
tests as one group whose steps depend on each other (the account created first is then
deactivated, renamed, given a new identifier...). ``KIT_STEPS`` lists them in the kit's order;
``test_kit_step`` runs every step up to the one it checks, so each step is a test of its own
on a fresh store. Like the kit, every body carries the same client id, which the server
ignores. The later tests cover what the kit leaves out: what an identifier names after it was
re-attributed, racing duplicates, transactions, the strict conditional-id mode.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from httpx import AsyncClient

from fhir_server.app import create_app
from fhir_server.settings import Settings
from fhir_server.storage.port import Store
from tests.api.conftest import BASE, FHIR

pytestmark = pytest.mark.asyncio

REGUL = "https://interop.esante.gouv.fr/ig/fhir/sas/StructureDefinition/FrPractitionerRegul"
IDNPS = "urn:oid:1.2.250.1.71.4.2.1"  # national identifier (identifier.type IDNPS)
INTRN = "urn:oid:1.2.250.1.213.3.6"  # SAS technical UUID (identifier.type INTRN); meta.source
ID_TYPES = "http://interopsante.org/fhir/CodeSystem/fr-v2-0203"
CLIENT_ID = "regulator-from-the-platform"  # the same in every body, as the kit does
# Kit inputs (our own values): an account's national id, the one it migrates to, its e-mails
# and names before and after modification.
NATIONAL = "0751234567/20000001"
NATIONAL_NEW = "0751234567/20000002"
MAIL, MAIL_NEW = "camille.martin@regulation.example", "camille.martin2@regulation.example"
GIVEN, GIVEN_NEW = "Camille", "Camille-Anne"
FAMILY, FAMILY_NEW = "Martin", "Martin-Durand"
HEADERS = {"Content-Type": "application/json", "Accept": "application/json+fhir"}


def regulator(
    value: str,
    system: str = IDNPS,
    *,
    mail: str = MAIL,
    given: str = GIVEN,
    family: str = FAMILY,
    active: bool = True,
    code: str | None = None,
) -> dict[str, Any]:
    """An FrPractitionerRegul account as the SAS platform sends it."""
    return {
        "resourceType": "Practitioner",
        "id": CLIENT_ID,
        "meta": {"source": INTRN, "profile": [REGUL]},
        "identifier": [
            {
                "type": {
                    "coding": [
                        {
                            "system": ID_TYPES,
                            "code": code or ("IDNPS" if system == IDNPS else "INTRN"),
                        }
                    ]
                },
                "system": system,
                "value": value,
            }
        ],
        "active": active,
        "name": [{"family": family, "given": [given]}],
        "telecom": [{"system": "email", "value": mail}],
    }


def without(body: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != key}


def missing_field_bodies() -> dict[str, dict[str, Any]]:
    """One required element left out at a time (the kit's four 'champs manquants')."""
    base = regulator(str(uuid.uuid4()), IDNPS, mail=f"{uuid.uuid4()}@regulation.example")
    return {key: without(base, key) for key in ("identifier", "name", "telecom", "active")}


def invalid_value_bodies() -> dict[str, dict[str, Any]]:
    """One bad value at a time (the kit's optional 'valeurs invalides')."""
    empty_family = regulator(str(uuid.uuid4()))
    empty_family["name"][0]["family"] = ""
    empty_mail = regulator(str(uuid.uuid4()), mail="")
    phone = regulator(str(uuid.uuid4()))
    phone["telecom"][0]["system"] = "phone"
    return {
        "empty family": empty_family,
        "empty e-mail": empty_mail,
        "telecom.system phone": phone,
        "IDNPS system, INTRN type": regulator("1223432432", IDNPS, code="INTRN"),
        "INTRN system, IDNPS type": regulator(str(uuid.uuid4()), INTRN, code="IDNPS"),
    }


def by_identifier(system: str, value: str) -> str:
    return f"/Practitioner?identifier={system}|{value}"


def assert_success(r: httpx.Response, *statuses: int) -> dict[str, Any]:
    """A 2xx with the stored account and its Location. The client id of a POST is ignored
    (a conditional update uses it only to create a resource when no resource has it)."""
    assert r.status_code in (statuses or (200, 201)), r.text
    body: dict[str, Any] = r.json()
    assert body["resourceType"] == "Practitioner"
    if r.request.method == "POST":
        assert body["id"] != CLIENT_ID
    assert r.headers["location"].startswith(f"{BASE}/Practitioner/{body['id']}/_history/")
    return body


def assert_refused(r: httpx.Response, what: str) -> None:
    assert 400 <= r.status_code < 500, f"{what}: {r.status_code} {r.text}"
    outcome = r.json()
    assert outcome["resourceType"] == "OperationOutcome", what
    assert any(i["severity"] in ("error", "fatal") for i in outcome["issue"]), what


async def holders(client: AsyncClient, system: str, value: str) -> list[dict[str, Any]]:
    found = (await client.get("/Practitioner", params={"identifier": f"{system}|{value}"})).json()
    return [e["resource"] for e in found.get("entry", [])]


async def count(client: AsyncClient) -> int:
    total: int = (await client.get("/Practitioner", params={"_summary": "count"})).json()["total"]
    return total


@dataclass
class Kit:
    """What the kit's steps share: the client and the ids they created."""

    client: AsyncClient
    uuid: str = field(default_factory=lambda: str(uuid.uuid4()))  # the INTRN account's
    ids: dict[str, str] = field(default_factory=dict)  # step -> resource id it created

    async def post(self, body: dict[str, Any]) -> httpx.Response:
        return await self.client.post("/Practitioner", json=body, headers=HEADERS)

    async def put(self, system: str, value: str, body: dict[str, Any]) -> httpx.Response:
        return await self.client.put(by_identifier(system, value), json=body, headers=HEADERS)

    async def read(self, res_id: str) -> dict[str, Any]:
        r = await self.client.get(f"/Practitioner/{res_id}")
        assert r.status_code == 200
        body: dict[str, Any] = r.json()
        return body


# -- the kit's steps, in its order (lib/sas_test_kit/prise_de_rendez_vous/flux_v1_group.rb) --


async def creation_regulateur_idnps(kit: Kit) -> None:
    created = assert_success(await kit.post(regulator(NATIONAL)), 201)
    kit.ids["national"] = created["id"]
    assert created["identifier"][0]["value"] == NATIONAL and created["active"] is True


async def creation_regulateur_uuid(kit: Kit) -> None:
    body = regulator(kit.uuid, INTRN, mail=f"{kit.uuid}{MAIL}")
    kit.ids["technical"] = assert_success(await kit.post(body), 201)["id"]


async def creation_double_regulateur_uuid(kit: Kit) -> None:
    value = str(uuid.uuid4())
    body = regulator(value, INTRN, mail=f"{value}{MAIL}")
    assert_success(await kit.post(body), 201)
    again = await kit.post(body)
    assert_refused(again, "the same INTRN account twice")
    assert again.status_code == 422 and again.json()["issue"][0]["code"] == "duplicate"
    assert again.json()["issue"][0]["expression"] == ["Practitioner.identifier[0]"]
    assert len(await holders(kit.client, INTRN, value)) == 1


async def creation_regulateur_champs_manquants(kit: Kit) -> None:
    before = await count(kit.client)
    for key, body in missing_field_bodies().items():
        assert_refused(await kit.post(body), f"POST without {key}")
    assert await count(kit.client) == before


async def creation_regulateur_valeurs_invalides(kit: Kit) -> None:
    before = await count(kit.client)
    for what, body in invalid_value_bodies().items():
        assert_refused(await kit.post(body), f"POST with {what}")
    assert await count(kit.client) == before


async def modification_deshabilitation(kit: Kit) -> None:
    r = await kit.put(IDNPS, NATIONAL, regulator(NATIONAL, active=False))
    updated = assert_success(r, 200)
    assert updated["id"] == kit.ids["national"] and updated["active"] is False


async def modification_habilitation(kit: Kit) -> None:
    updated = assert_success(await kit.put(IDNPS, NATIONAL, regulator(NATIONAL)), 200)
    assert updated["id"] == kit.ids["national"] and updated["active"] is True


async def modification_email_regulateur(kit: Kit) -> None:
    r = await kit.put(IDNPS, NATIONAL, regulator(NATIONAL, mail=MAIL_NEW))
    assert assert_success(r, 200)["telecom"] == [{"system": "email", "value": MAIL_NEW}]


async def modification_id_regulateur(kit: Kit) -> None:
    # The body carries the new identifier, the URL the one the account has today.
    r = await kit.put(IDNPS, NATIONAL, regulator(NATIONAL_NEW, mail=MAIL_NEW))
    updated = assert_success(r, 200)
    assert updated["id"] == kit.ids["national"]
    assert updated["identifier"][0]["value"] == NATIONAL_NEW
    assert await holders(kit.client, IDNPS, NATIONAL) == []
    assert [p["id"] for p in await holders(kit.client, IDNPS, NATIONAL_NEW)] == [
        kit.ids["national"]
    ]


async def modification_typeid_regulateur(kit: Kit) -> None:
    # As the kit sends it: the URL puts the UUID under the national system (no match) and the
    # body is an INTRN account: a create.
    body = regulator(NATIONAL, INTRN, mail=f"{kit.uuid}{MAIL}")
    created = assert_success(await kit.put(IDNPS, kit.uuid, body), 201)
    assert created["id"] not in kit.ids.values()


async def modification_nom_regulateur(kit: Kit) -> None:
    body = regulator(NATIONAL_NEW, mail=MAIL_NEW, family=FAMILY_NEW)
    updated = assert_success(await kit.put(IDNPS, NATIONAL_NEW, body), 200)
    assert updated["id"] == kit.ids["national"] and updated["name"][0]["family"] == FAMILY_NEW


async def modification_prenom_regulateur(kit: Kit) -> None:
    body = regulator(NATIONAL_NEW, mail=MAIL_NEW, family=FAMILY_NEW, given=GIVEN_NEW)
    updated = assert_success(await kit.put(IDNPS, NATIONAL_NEW, body), 200)
    assert updated["id"] == kit.ids["national"] and updated["name"][0]["given"] == [GIVEN_NEW]


async def modification_regulateur_champs_manquants(kit: Kit) -> None:
    before = await kit.read(kit.ids["national"])
    for key, body in missing_field_bodies().items():
        assert_refused(await kit.put(IDNPS, NATIONAL_NEW, body), f"PUT without {key}")
    assert await kit.read(kit.ids["national"]) == before


async def put_as_create_missing_fields(kit: Kit) -> None:
    before = await count(kit.client)
    value = str(uuid.uuid4())
    for key, body in missing_field_bodies().items():
        assert_refused(await kit.put(INTRN, value, body), f"PUT-as-create without {key}")
    assert await count(kit.client) == before


async def put_as_create(kit: Kit) -> None:
    value = str(uuid.uuid4())
    body = regulator(value, INTRN, mail=f"{value}{MAIL}", given=f"{value}{GIVEN}")
    created = assert_success(await kit.put(INTRN, value, body), 201)
    again = assert_success(await kit.put(INTRN, value, body), 200)  # idempotent
    assert again["id"] == created["id"] and again["meta"]["versionId"] == "2"


async def idnps_reattribution(kit: Kit) -> None:
    # 1. the national id's account is deactivated (nobody holds NATIONAL since the migration
    #    above, so this PUT creates an inactive account: the guide's idempotent PUT)
    old = assert_success(await kit.put(IDNPS, NATIONAL, regulator(NATIONAL, active=False)))
    assert old["active"] is False
    # 2. a new account with a SAS UUID
    value = str(uuid.uuid4())
    body = regulator(value, INTRN, mail=f"{value}.{MAIL}")
    new = assert_success(await kit.post(body), 201)
    # 3. the new account receives the national id the deactivated one still carries
    body = regulator(NATIONAL, IDNPS, mail=f"{value}.{MAIL}")
    moved = assert_success(await kit.put(INTRN, value, body), 200)
    assert moved["id"] == new["id"] and moved["identifier"][0]["value"] == NATIONAL
    kit.ids["old holder"], kit.ids["new holder"] = old["id"], new["id"]


KIT_STEPS: list[Callable[[Kit], Awaitable[None]]] = [
    creation_regulateur_idnps,
    creation_regulateur_uuid,
    creation_double_regulateur_uuid,
    creation_regulateur_champs_manquants,
    creation_regulateur_valeurs_invalides,
    modification_deshabilitation,
    modification_habilitation,
    modification_email_regulateur,
    modification_id_regulateur,
    modification_typeid_regulateur,
    modification_nom_regulateur,
    modification_prenom_regulateur,
    modification_regulateur_champs_manquants,
    put_as_create_missing_fields,
    put_as_create,
    idnps_reattribution,
]


async def run_kit(client: AsyncClient, upto: int | None = None) -> Kit:
    kit = Kit(client)
    for step in KIT_STEPS[: None if upto is None else upto + 1]:
        await step(kit)
    return kit


@pytest.mark.parametrize("upto", range(len(KIT_STEPS)), ids=[s.__name__ for s in KIT_STEPS])
async def test_kit_step(client: AsyncClient, upto: int) -> None:
    """The kit's step ``upto`` passes after the steps before it."""
    await run_kit(client, upto)


# -- beyond the kit ----------------------------------------------------------------------------


async def test_missing_fields_and_bad_values_name_the_element(client: AsyncClient) -> None:
    expected = {
        "identifier": ("Practitioner.identifier", 422),
        "name": ("Practitioner", 422),  # sas-regul-name (the profile has name 0..*)
        "telecom": ("Practitioner", 422),  # sas-regul-email
        "active": ("Practitioner.active", 422),
        "empty family": ("Practitioner.name[0].family", 400),  # not a FHIR string
        "empty e-mail": ("Practitioner.telecom[0].value", 400),
        "telecom.system phone": ("Practitioner.telecom[0].system", 422),
        "IDNPS system, INTRN type": ("Practitioner.identifier[0].type", 422),
        "INTRN system, IDNPS type": ("Practitioner.identifier[0].type", 422),
    }
    bodies = {**missing_field_bodies(), **invalid_value_bodies()}
    for what, (expression, status) in expected.items():
        r = await client.post("/Practitioner", json=bodies[what], headers=HEADERS)
        assert r.status_code == status, (what, r.text)
        found = [e for i in r.json()["issue"] for e in i.get("expression", [])]
        assert expression in found, (what, found)


async def test_meta_source_must_be_the_sas_platform(client: AsyncClient) -> None:
    body = regulator(NATIONAL)
    body["meta"]["source"] = "urn:oid:1.2.3"
    r = await client.post("/Practitioner", json=body, headers=HEADERS)
    assert r.status_code == 422
    assert ["Practitioner.meta.source"] in [i.get("expression") for i in r.json()["issue"]]


async def test_duplicate_national_id_while_active_then_after_deactivation(
    client: AsyncClient,
) -> None:
    first = assert_success(await client.post("/Practitioner", json=regulator(NATIONAL)), 201)
    r = await client.post("/Practitioner", json=regulator(NATIONAL))
    assert r.status_code == 422 and r.json()["issue"][0]["code"] == "duplicate"
    assert first["id"] in r.json()["issue"][0]["diagnostics"]
    # an inactive account may carry an identifier an active one holds, and frees it
    assert_success(await client.post("/Practitioner", json=regulator(NATIONAL, active=False)))
    deactivated = regulator(NATIONAL, active=False)
    r = await client.put(f"/Practitioner/{first['id']}", json={**deactivated, "id": first["id"]})
    assert r.status_code == 200
    assert_success(await client.post("/Practitioner", json=regulator(NATIONAL)), 201)


async def test_reattributed_identifier_names_its_active_holder(client: AsyncClient) -> None:
    kit = await run_kit(client)
    # Two accounts carry NATIONAL, one active: the platform's next update reaches that one.
    assert len(await holders(client, IDNPS, NATIONAL)) == 2
    r = await kit.put(IDNPS, NATIONAL, regulator(NATIONAL, mail=MAIL_NEW))
    assert assert_success(r, 200)["id"] == kit.ids["new holder"]
    # The old holder cannot come back while the identifier is held.
    old = await kit.read(kit.ids["old holder"])
    r = await client.put(f"/Practitioner/{old['id']}", json={**old, "active": True})
    assert r.status_code == 422 and r.json()["issue"][0]["code"] == "duplicate"
    patch = [{"op": "replace", "path": "/active", "value": True}]
    r = await client.patch(
        f"/Practitioner/{old['id']}",
        json=patch,
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert r.status_code == 422 and r.json()["issue"][0]["code"] == "duplicate"
    # Both deactivated: the identifier names two accounts, none active: 412.
    r = await kit.put(IDNPS, NATIONAL, regulator(NATIONAL, active=False))
    assert assert_success(r, 200)["id"] == kit.ids["new holder"]
    r = await kit.put(IDNPS, NATIONAL, regulator(NATIONAL))
    assert r.status_code == 412 and r.json()["issue"][0]["code"] == "multiple-matches"


async def test_migration_to_a_national_id_held_by_an_active_account(client: AsyncClient) -> None:
    assert_success(await client.post("/Practitioner", json=regulator(NATIONAL)), 201)
    value = str(uuid.uuid4())
    assert_success(await client.post("/Practitioner", json=regulator(value, INTRN)), 201)
    r = await client.put(by_identifier(INTRN, value), json=regulator(NATIONAL))
    assert r.status_code == 422 and r.json()["issue"][0]["code"] == "duplicate"
    assert (await holders(client, INTRN, value))[0]["identifier"][0]["system"] == INTRN


async def test_racing_duplicate_posts_make_one_account(client: AsyncClient) -> None:
    value = str(uuid.uuid4())
    results = await asyncio.gather(
        *[
            client.post("/Practitioner", json=regulator(value, INTRN), headers=HEADERS)
            for _ in range(8)
        ]
    )
    statuses = sorted(r.status_code for r in results)
    assert statuses == [201] + [422] * 7, statuses
    assert len(await holders(client, INTRN, value)) == 1


async def test_racing_put_as_create_makes_one_account(client: AsyncClient) -> None:
    value = str(uuid.uuid4())
    results = await asyncio.gather(
        *[
            client.put(by_identifier(INTRN, value), json=regulator(value, INTRN), headers=HEADERS)
            for _ in range(6)
        ]
    )
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200] * 5 + [201], statuses
    assert len(await holders(client, INTRN, value)) == 1


async def test_transaction_refuses_two_accounts_with_one_identifier(client: AsyncClient) -> None:
    value = str(uuid.uuid4())
    entry = {
        "resource": regulator(value, INTRN),
        "request": {"method": "POST", "url": "Practitioner"},
    }
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [entry, entry]}
    r = await client.post("/", json=bundle, headers={"Content-Type": FHIR})
    assert r.status_code == 422, r.text
    assert r.json()["issue"][0]["expression"] == ["Bundle.entry[1].resource.identifier[0]"]
    assert await holders(client, INTRN, value) == []
    # a conditional PUT entry ignores the body's id like a single request does
    put = {
        "resource": regulator(value, INTRN),
        "request": {"method": "PUT", "url": f"Practitioner?identifier={INTRN}|{value}"},
    }
    for status in ("201 Created", "200 OK"):
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [put]}
        r = await client.post("/", json=bundle, headers={"Content-Type": FHIR})
        assert r.json()["entry"][0]["response"]["status"] == status, r.text
    assert len(await holders(client, INTRN, value)) == 1


@asynccontextmanager
async def client_with(store: Store, settings: Settings) -> AsyncIterator[AsyncClient]:
    app = create_app(settings, store=store)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5000))
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
            yield c


async def test_strict_conditional_ids_answer_as_r4_says(store: Store, settings: Settings) -> None:
    strict = settings.model_copy(update={"conditional_update_id": "strict"})
    async with client_with(store, strict) as client:
        value = str(uuid.uuid4())
        body = regulator(value, INTRN)
        created = await client.put(by_identifier(INTRN, value), json=body)
        assert created.status_code == 201 and created.json()["id"] == CLIENT_ID  # update as create
        other = str(uuid.uuid4())
        taken = await client.put(by_identifier(INTRN, other), json=regulator(other, INTRN))
        assert taken.status_code == 409  # the body's id belongs to another resource
        r = await client.put(by_identifier(INTRN, value), json={**body, "id": "another-id"})
        assert r.status_code == 400 and r.json()["issue"][0]["expression"] == ["Practitioner.id"]


async def test_lenient_conditional_ids_use_a_free_body_id(client: AsyncClient) -> None:
    value = str(uuid.uuid4())
    created = await client.put(by_identifier(INTRN, value), json=regulator(value, INTRN))
    assert created.status_code == 201 and created.json()["id"] == CLIENT_ID
    other = str(uuid.uuid4())
    second = await client.put(by_identifier(INTRN, other), json=regulator(other, INTRN))
    assert second.status_code == 201 and second.json()["id"] != CLIENT_ID


async def test_uniqueness_can_be_turned_off(store: Store, settings: Settings) -> None:
    async with client_with(store, settings.model_copy(update={"unique_identifiers": []})) as c:
        for _ in range(2):
            assert (await c.post("/Practitioner", json=regulator(NATIONAL))).status_code == 201
