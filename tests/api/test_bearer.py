"""Bearer tokens on the FHIR API, issued by the dev IdP over real HTTP.

Systems (client credentials, ``FHIR_SYSTEM_CLIENTS``) act with their configured role;
people (a PSC-style token of an allowed application) act with the role of their regulator
account. Every refusal is a 401 OperationOutcome with a ``WWW-Authenticate`` challenge, or
a 403 when the token holds but its person has no business here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from fastapi import FastAPI

from auth.dev_idp import DevIdpConfig
from fhir_server.app import create_app
from fhir_server.settings import Settings
from fhir_server.storage.port import Store
from tests.api.test_login import regulator_account
from tests.auth.dev_idp.conftest import (
    SYSTEM,
    SYSTEM_SECRET,
    Idp,
    clients_for_tests,
    serving,
    tokens_for,
)

REGULATOR_ID = "819999000011"


@pytest.fixture(scope="module")
def idp() -> Iterator[Idp]:
    with serving(DevIdpConfig(clients=clients_for_tests())) as running:
        yield running


@pytest.fixture
async def app(store: Store, idp: Idp) -> AsyncIterator[FastAPI]:
    settings = Settings(
        auth="on",
        validate_profiles=False,
        psc_issuer=idp.issuer,
        token_clients=["sas-fhir-server"],
        system_clients={SYSTEM: "platform"},
    )
    application = create_app(settings, store=store)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def api(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5000))
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
        yield c


def system_token(idp: Idp, client: str = SYSTEM, secret: str = SYSTEM_SECRET) -> str:
    answer = idp.http.post(
        idp.endpoint("token"),
        data={"grant_type": "client_credentials", "scope": "system/Slot.read"},
        auth=(client, secret),
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_refused(answer: httpx.Response, status: int, error: str | None = None) -> None:
    assert answer.status_code == status, answer.text
    assert answer.json()["resourceType"] == "OperationOutcome"
    if status == 401:
        challenge = answer.headers["www-authenticate"]
        assert challenge.startswith('Bearer realm="fhir"')
        if error:
            assert f'error="{error}"' in challenge


async def test_a_system_with_a_client_credentials_token_searches(
    api: httpx.AsyncClient, idp: Idp
) -> None:
    answer = await api.get("/Slot", params={"status": "free"}, headers=bearer(system_token(idp)))
    assert answer.status_code == 200, answer.text
    assert answer.json()["resourceType"] == "Bundle"


async def test_a_regulator_with_a_psc_token_searches(
    app: FastAPI, api: httpx.AsyncClient, idp: Idp
) -> None:
    await regulator_account(app, REGULATOR_ID)
    token = tokens_for(idp, "regulateur-fictif")["access_token"]
    for _ in range(3):  # one userinfo call for the token, not one per request
        answer = await api.get("/Slot", params={"status": "free"}, headers=bearer(token))
        assert answer.status_code == 200, answer.text


async def test_a_professional_without_an_account_is_forbidden(
    api: httpx.AsyncClient, idp: Idp
) -> None:
    token = tokens_for(idp, "generaliste-modele")["access_token"]
    assert_refused(await api.get("/Slot", headers=bearer(token)), 403)


async def test_no_credentials_is_401_with_a_challenge(api: httpx.AsyncClient) -> None:
    assert_refused(await api.get("/Slot"), 401)


async def test_the_capability_statement_is_public(api: httpx.AsyncClient) -> None:
    assert (await api.get("/metadata")).status_code == 200


@pytest.mark.parametrize(
    "header",
    [
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer ",
        "Bearer not-a-jwt",
        "Bearer " + "a" * 20_000,
        "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
    ],
    ids=["basic", "empty", "blank", "garbage", "oversized", "alg-none"],
)
async def test_bad_authorization_headers_are_401(api: httpx.AsyncClient, header: str) -> None:
    answer = await api.get("/Slot", headers={"Authorization": header})
    assert_refused(answer, 401)
    assert "a" * 100 not in answer.text  # the token is never echoed


async def test_an_id_token_is_not_an_access_token(api: httpx.AsyncClient, idp: Idp) -> None:
    id_token = tokens_for(idp, "regulateur-fictif")["id_token"]
    assert_refused(await api.get("/Slot", headers=bearer(id_token)), 401, "invalid_token")


async def test_a_client_not_allowed_here_is_401(api: httpx.AsyncClient, idp: Idp) -> None:
    """A valid token of the IdP, but for an application this server does not accept."""
    import time
    import uuid

    from joserfc import jwt

    from tests.auth.dev_idp.conftest import SIGNED, SIGNED_KEY

    now = int(time.time())
    assertion = jwt.encode(
        {"alg": "RS256", "kid": SIGNED_KEY.kid},
        {
            "iss": SIGNED,
            "sub": SIGNED,
            "aud": idp.endpoint("token"),
            "jti": uuid.uuid4().hex,
            "iat": now,
            "exp": now + 60,
        },
        SIGNED_KEY,
    )
    answer = idp.http.post(
        idp.endpoint("token"),
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
            "client_id": SIGNED,
        },
    )
    assert answer.status_code == 200, answer.text
    token = answer.json()["access_token"]
    assert_refused(await api.get("/Slot", headers=bearer(token)), 401, "invalid_token")


async def test_a_token_signed_by_a_rotated_key_still_holds(
    api: httpx.AsyncClient, idp: Idp
) -> None:
    """Rotation at the IdP: the server fetches the new key on the unknown kid."""
    from auth.dev_idp import rotate_keys

    before = system_token(idp)
    assert (await api.get("/Slot", headers=bearer(before))).status_code == 200
    rotate_keys(idp.app)
    after = system_token(idp)
    assert (await api.get("/Slot", headers=bearer(after))).status_code == 200
    assert (await api.get("/Slot", headers=bearer(before))).status_code == 200  # grace
