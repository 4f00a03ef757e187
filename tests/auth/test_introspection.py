"""RFC 7662 introspection against the stub PSC over loopback HTTP: active tokens pass,
inactive/expired/foreign ones are refused, answers are cached until exp (bounded)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import pytest
from joserfc.jwk import RSAKey

from auth.errors import IdpUnavailable, TokenRejected
from auth.introspection import IntrospectionConfig, Introspector
from tests.auth.psc_stub import Client, StubIdp, running_idp

API, SECRET, APP = "sas-fhir-api", "api-secret", "sas-regulation"


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def idp() -> Iterator[StubIdp]:
    with running_idp() as idp:
        idp.clients[API] = Client(secret=SECRET)
        yield idp


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def introspector(idp: StubIdp, clock: Clock) -> AsyncIterator[Introspector]:
    config = IntrospectionConfig(
        idp.issuer, API, client_secret=SECRET, allowed_clients=frozenset({APP})
    )
    i = Introspector(config, clock=clock)
    yield i
    await i.aclose()


async def refused(introspector: Introspector, token: str) -> str:
    with pytest.raises(TokenRejected) as info:
        await introspector.introspect(token)
    return info.value.reason


async def test_an_active_token(idp: StubIdp, introspector: Introspector) -> None:
    token = idp.access_token(APP)
    verified = await introspector.introspect(token)
    assert verified.client_id == APP and verified.subject == idp.subject
    assert verified.scopes == {"openid", "scope_all"} and verified.acr == "eidas1"
    assert verified.issuer == idp.issuer
    assert idp.counts["introspect"] == 1


async def test_answers_are_cached_until_exp(
    idp: StubIdp, introspector: Introspector, clock: Clock
) -> None:
    token = idp.access_token(APP)  # exp: now + 120
    await introspector.introspect(token)
    clock.now += 100
    await introspector.introspect(token)
    assert idp.counts["introspect"] == 1
    clock.now += 30  # past exp: asked again; an IdP still saying "active" is not believed
    assert "expired" in await refused(introspector, token)
    assert idp.counts["introspect"] == 2
    del idp.access_tokens[token]  # now revoked at the IdP
    clock.now += 11
    assert "not active" in await refused(introspector, token)
    assert idp.counts["introspect"] == 3


async def test_cache_is_bounded(idp: StubIdp, clock: Clock) -> None:
    config = IntrospectionConfig(idp.issuer, API, client_secret=SECRET)
    introspector = Introspector(config, clock=clock, max_cache_entries=3)
    tokens = [idp.access_token(APP) for _ in range(4)]
    for t in tokens:
        await introspector.introspect(t)
    await introspector.introspect(tokens[0])  # evicted: asked again
    assert idp.counts["introspect"] == 5
    await introspector.introspect(tokens[3])
    assert idp.counts["introspect"] == 5
    await introspector.aclose()


async def test_inactive_token(idp: StubIdp, introspector: Introspector, clock: Clock) -> None:
    unknown = idp.sign(idp.access_claims(APP))  # never issued by the stub's token store
    assert "not active" in await refused(introspector, unknown)
    assert "not active" in await refused(introspector, unknown)  # remembered briefly
    assert idp.counts["introspect"] == 1
    clock.now += 11
    await refused(introspector, unknown)
    assert idp.counts["introspect"] == 2


async def test_active_but_not_for_us(idp: StubIdp, introspector: Introspector) -> None:
    assert "azp" in await refused(introspector, idp.access_token("another-app"))
    idp.acr = None
    assert "acr" in await refused(introspector, idp.access_token(APP))


async def test_garbage_and_oversized_tokens_are_not_sent(
    idp: StubIdp, introspector: Introspector
) -> None:
    assert "larger" in await refused(introspector, "a" * 9000)
    assert "characters" in await refused(introspector, "a b")
    assert "characters" in await refused(introspector, "")
    assert "not active" in await refused(introspector, "opaque+token/with=chars")
    assert idp.counts["introspect"] == 1


async def test_private_key_jwt(idp: StubIdp) -> None:
    key = RSAKey.generate_key(2048, parameters={"kid": "api-key"})
    idp.clients["jwt-api"] = Client(public_jwk=key.as_dict(private=False))
    config = IntrospectionConfig(idp.issuer, "jwt-api", private_key_jwk=key.as_dict(private=True))
    introspector = Introspector(config)
    assert (await introspector.introspect(idp.access_token(APP))).client_id == APP
    await introspector.aclose()


async def test_wrong_credentials_are_not_a_refusal_of_the_token(idp: StubIdp) -> None:
    config = IntrospectionConfig(idp.issuer, API, client_secret="wrong")
    introspector = Introspector(config)
    with pytest.raises(IdpUnavailable, match="HTTP 401"):
        await introspector.introspect(idp.access_token(APP))
    await introspector.aclose()
