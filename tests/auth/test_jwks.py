"""The JWKS cache of one issuer, against the stub PSC over loopback HTTP: which published
keys are usable, refresh on unknown kid (rate limited), staleness, and an IdP that fails."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc.jwk import ECKey, OctKey, RSAKey

from auth.discovery import Discovery
from auth.errors import IdpUnavailable, TokenRejected
from auth.jwks import JwksCache
from tests.auth.psc_stub import StubIdp, rsa_key, running_idp


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def idp() -> Iterator[StubIdp]:
    with running_idp() as idp:
        yield idp


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def cache(idp: StubIdp, http: httpx.AsyncClient, clock: Clock, **kw: float) -> JwksCache:
    discovery = Discovery(http, idp.issuer, clock=clock)
    return JwksCache(http, discovery, clock=clock, **kw)


def published(key: RSAKey | ECKey | OctKey, **extra: object) -> dict[str, object]:
    return {**key.as_dict(private=False), **extra}


@pytest.mark.filterwarnings("ignore::joserfc.errors.SecurityWarning")  # making the weak key
async def test_usable_and_unusable_keys(
    idp: StubIdp, http: httpx.AsyncClient, clock: Clock
) -> None:
    weak = RSAKey.import_key(rsa.generate_private_key(65537, 1024), {"kid": "weak"})
    p384 = ECKey.import_key(ec.generate_private_key(ec.SECP384R1()), {"kid": "p384"})
    good_ec = ECKey.generate_key("P-256", parameters={"kid": "ec"})
    idp.extra_jwks = [
        published(weak),
        published(p384),
        published(rsa_key("enc"), use="enc"),
        rsa_key("private").as_dict(private=True),
        {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0c2VjcmV0c2VjcmV0"},
        {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
        {"kty": "RSA", "n": "AQAB", "e": "AQAB"},  # no kid
        {
            "kty": "OKP",
            "kid": "ed",
            "crv": "Ed25519",
            "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
        },
        "not an object",
        published(good_ec),
        published(rsa_key("rs-only"), alg="RS256"),
    ]
    jwks = cache(idp, http, clock)
    assert (await jwks.key_for("key-1", "RS256")).kid == "key-1"
    assert (await jwks.key_for("ec", "ES256")).kid == "ec"
    assert (await jwks.key_for("rs-only", "RS256")).kid == "rs-only"
    for kid in ("weak", "p384", "enc", "private", "hmac", "broken", "ed"):
        with pytest.raises(TokenRejected, match="kid"):
            await jwks.key_for(kid, "RS256")
    with pytest.raises(TokenRejected, match="does not fit"):
        await jwks.key_for("ec", "RS256")
    with pytest.raises(TokenRejected, match="does not fit"):
        await jwks.key_for("key-1", "ES256")
    with pytest.raises(TokenRejected, match="another algorithm"):
        await jwks.key_for("rs-only", "PS256")
    # the first fetch, then one refresh for the first unknown kid; the others wait their turn
    assert jwks.fetches == 2 and idp.counts["jwks"] == 2


async def test_a_jwks_without_usable_keys(
    idp: StubIdp, http: httpx.AsyncClient, clock: Clock
) -> None:
    idp.keys = []
    idp.extra_jwks = [published(rsa_key("enc"), use="enc")]
    with pytest.raises(IdpUnavailable):
        await cache(idp, http, clock).key_for("enc", "RS256")


async def test_refresh_on_unknown_kid_is_rate_limited(
    idp: StubIdp, http: httpx.AsyncClient, clock: Clock
) -> None:
    jwks = cache(idp, http, clock, min_refresh_interval=60)
    await jwks.key_for("key-1", "RS256")
    idp.rotate("key-2", keep_old=True)
    clock.now += 1  # a rotation just after the first fetch is seen at once
    assert (await jwks.key_for("key-2", "RS256")).kid == "key-2"
    idp.rotate("key-3", keep_old=True)
    clock.now += 59
    for _ in range(5):  # too soon after the last unknown-kid refresh
        with pytest.raises(TokenRejected):
            await jwks.key_for("key-3", "RS256")
    clock.now += 1
    assert (await jwks.key_for("key-3", "RS256")).kid == "key-3"
    assert (await jwks.key_for("key-1", "RS256")).kid == "key-1"  # all published
    assert idp.counts["jwks"] == 3


async def test_a_failed_refresh_keeps_the_keys(
    idp: StubIdp, http: httpx.AsyncClient, clock: Clock
) -> None:
    jwks = cache(idp, http, clock, min_refresh_interval=60, max_age=600)
    await jwks.key_for("key-1", "RS256")
    idp.jwks_status = 503
    clock.now += 601  # stale: one refresh attempt, which fails; the old key still serves
    assert (await jwks.key_for("key-1", "RS256")).kid == "key-1"
    for _ in range(10):
        clock.now += 1
        await jwks.key_for("key-1", "RS256")
        with pytest.raises(TokenRejected):
            await jwks.key_for("unknown", "RS256")
    assert idp.counts["jwks"] == 3  # the stale refresh, then one for the first unknown kid
    idp.jwks_status = 200
    clock.now += 60
    await jwks.key_for("key-1", "RS256")
    assert idp.counts["jwks"] == 4


async def test_an_idp_down_from_the_start_is_not_hammered(
    idp: StubIdp, http: httpx.AsyncClient, clock: Clock
) -> None:
    idp.jwks_status = 500
    jwks = cache(idp, http, clock, min_refresh_interval=30)
    for _ in range(10):
        with pytest.raises(IdpUnavailable):
            await jwks.key_for("key-1", "RS256")
    assert idp.counts["jwks"] == 1
    idp.jwks_status = 200
    clock.now += 30
    assert (await jwks.key_for("key-1", "RS256")).kid == "key-1"
    assert idp.counts["jwks"] == 2


async def test_an_oversized_jwks_is_refused(
    idp: StubIdp, http: httpx.AsyncClient, clock: Clock
) -> None:
    idp.extra_jwks = [{"kty": "RSA", "kid": f"k{i}", "n": "x" * 1000} for i in range(300)]
    with pytest.raises(IdpUnavailable):
        await cache(idp, http, clock).key_for("key-1", "RS256")
