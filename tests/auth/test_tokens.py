"""Local checks of PSC access and ID tokens against a stub PSC over real loopback HTTP:
each bad token of the issue is refused with a reason naming the failed check."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import given, settings
from hypothesis import strategies as st
from joserfc.jwk import ECKey

from auth.errors import IdpUnavailable, TokenRejected
from auth.tokens import IssuerConfig, TokenVerifier
from tests.auth.psc_stub import REALM, StubIdp, b64, rsa_key, running_idp

CLIENT = "sas-regulation"


@pytest.fixture
def idp() -> Iterator[StubIdp]:
    with running_idp() as idp:
        yield idp


def config(idp: StubIdp, **kw: object) -> IssuerConfig:
    base = {"issuer": idp.issuer, "allowed_clients": frozenset({CLIENT})}
    return IssuerConfig(**{**base, **kw})  # type: ignore[arg-type]


@pytest.fixture
async def verifier(idp: StubIdp) -> AsyncIterator[TokenVerifier]:
    v = TokenVerifier([config(idp)])
    yield v
    await v.aclose()


async def rejected(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(TokenRejected) as info:
        await verifier.verify_access_token(token)
    assert info.value.error == "invalid_token"
    if token:
        assert token not in info.value.reason
    return info.value.reason


def forge(header: dict[str, object], claims: dict[str, object], signature: bytes = b"") -> str:
    def seg(v: dict[str, object]) -> str:
        return b64(json.dumps(v).encode())

    return f"{seg(header)}.{seg(claims)}.{b64(signature)}"


async def test_a_psc_access_token_is_accepted(idp: StubIdp, verifier: TokenVerifier) -> None:
    token = idp.access_token(CLIENT)
    verified = await verifier.verify_access_token(token)
    assert verified.issuer == idp.issuer
    assert verified.subject == idp.subject
    assert verified.client_id == CLIENT
    assert verified.scopes == {"openid", "scope_all"}
    assert verified.acr == "eidas1"
    assert abs(verified.expires_at.timestamp() - (time.time() + 120)) < 5
    assert verified.claims["preferred_username"] == "810002345678"
    # one discovery and one JWKS fetch, then cached
    await verifier.verify_access_token(idp.access_token(CLIENT))
    assert idp.counts["discovery"] == 1 and idp.counts["jwks"] == 1


async def test_es256_and_ps256_tokens_are_accepted(idp: StubIdp, verifier: TokenVerifier) -> None:
    ec = ECKey.generate_key("P-256", parameters={"kid": "ec-1", "use": "sig"})
    idp.keys.append(ec)
    await verifier.verify_access_token(idp.sign(idp.access_claims(), key=ec))
    rsa = idp.keys[0]
    await verifier.verify_access_token(
        idp.sign(idp.access_claims(), key=rsa, header={"alg": "PS256"})
    )


async def test_expired(idp: StubIdp, verifier: TokenVerifier) -> None:
    now = int(time.time())
    reason = await rejected(verifier, idp.sign(idp.access_claims(exp=now - 31, iat=now - 200)))
    assert "expired" in reason
    # within the leeway (30 s) it still passes
    await verifier.verify_access_token(idp.sign(idp.access_claims(exp=now - 20)))


async def test_not_yet_valid(idp: StubIdp, verifier: TokenVerifier) -> None:
    now = int(time.time())
    assert "nbf" in await rejected(verifier, idp.sign(idp.access_claims(nbf=now + 300)))
    await verifier.verify_access_token(idp.sign(idp.access_claims(nbf=now + 10)))


async def test_missing_or_nonsense_expiry(idp: StubIdp, verifier: TokenVerifier) -> None:
    assert "exp" in await rejected(verifier, idp.sign(idp.access_claims(exp=None)))
    assert "exp" in await rejected(verifier, idp.sign(idp.access_claims(exp="tomorrow")))


async def test_wrong_signature(idp: StubIdp, verifier: TokenVerifier) -> None:
    other = rsa_key("key-1")  # same kid, another key: an impostor
    assert "signature" in await rejected(verifier, idp.sign(idp.access_claims(), key=other))
    # a valid token whose claims were changed after signing
    header, _, sig = idp.access_token(CLIENT).split(".")
    tampered = b64(json.dumps(idp.access_claims(sub="someone-else")).encode())
    assert "signature" in await rejected(verifier, f"{header}.{tampered}.{sig}")


async def test_alg_none_is_refused(idp: StubIdp, verifier: TokenVerifier) -> None:
    claims = idp.access_claims()
    assert "algorithm" in await rejected(
        verifier, forge({"alg": "none", "kid": "key-1"}, claims, b"x")
    )
    unsigned = forge({"alg": "none", "typ": "JWT"}, claims)  # "header.payload." form
    assert "not a signed JWT" in await rejected(verifier, unsigned)


async def test_hs256_with_the_public_key_as_secret_is_refused(
    idp: StubIdp, verifier: TokenVerifier
) -> None:
    public_pem = idp.key.raw_value.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "kid": "key-1"}
    unsigned = forge(header, idp.access_claims()).rsplit(".", 1)[0]
    sig = hmac.new(public_pem, unsigned.encode(), hashlib.sha256).digest()
    assert "algorithm" in await rejected(verifier, unsigned + "." + b64(sig))


async def test_algorithm_that_does_not_fit_the_key(idp: StubIdp, verifier: TokenVerifier) -> None:
    header = {"alg": "ES256", "kid": "key-1"}  # key-1 is an RSA key
    token = forge(header, idp.access_claims(), b"\x01" * 64)
    assert "does not fit" in await rejected(verifier, token)


async def test_wrong_issuer(idp: StubIdp, verifier: TokenVerifier) -> None:
    evil = idp.issuer.replace(REALM, "/auth/realms/other")
    assert "issuer" in await rejected(verifier, idp.sign(idp.access_claims(iss=evil)))
    assert "issuer" in await rejected(verifier, idp.sign(idp.access_claims(iss=idp.issuer + "/")))
    assert "issuer" in await rejected(verifier, idp.sign(idp.access_claims(iss=[idp.issuer])))
    # an untrusted issuer is never contacted
    assert idp.counts["discovery"] == 0


async def test_missing_or_weaker_acr(idp: StubIdp, verifier: TokenVerifier) -> None:
    assert "acr" in await rejected(verifier, idp.sign(idp.access_claims(acr=None)))
    assert "acr" in await rejected(verifier, idp.sign(idp.access_claims(acr="eidas0")))


async def test_acr_not_required(idp: StubIdp) -> None:
    verifier = TokenVerifier([config(idp, required_acr=None)])
    verified = await verifier.verify_access_token(idp.sign(idp.access_claims(acr=None)))
    assert verified.acr is None
    await verifier.aclose()


async def test_wrong_or_missing_azp(idp: StubIdp, verifier: TokenVerifier) -> None:
    assert "azp" in await rejected(verifier, idp.access_token("another-app"))
    assert "azp" in await rejected(verifier, idp.sign(idp.access_claims(azp=None)))


async def test_system_clients_need_no_acr(idp: StubIdp) -> None:
    verifier = TokenVerifier([config(idp, system_clients=frozenset({"vendor-x"}))])
    token = idp.sign(idp.access_claims("vendor-x", acr="1", sub="service-account-vendor-x"))
    assert (await verifier.verify_access_token(token)).client_id == "vendor-x"
    assert "acr" in await rejected(verifier, idp.sign(idp.access_claims(CLIENT, acr="1")))
    assert "azp" in await rejected(verifier, idp.sign(idp.access_claims("vendor-y", acr="1")))
    await verifier.aclose()


async def test_audience_when_configured(idp: StubIdp) -> None:
    verifier = TokenVerifier([config(idp, audience="https://fhir.example")])
    assert "aud" in await rejected(verifier, idp.access_token(CLIENT))  # PSC: no aud
    ok = idp.sign(idp.access_claims(aud=["account", "https://fhir.example"]))
    assert (await verifier.verify_access_token(ok)).client_id == CLIENT
    await verifier.aclose()


async def test_oversized_token_is_refused_without_parsing(
    idp: StubIdp, verifier: TokenVerifier
) -> None:
    big = idp.sign(idp.access_claims(padding="x" * 9000))
    assert "larger than 8192" in await rejected(verifier, big)
    assert "larger" in await rejected(verifier, "{" * 10_000_000)
    assert idp.counts["discovery"] == 0


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        "a.b.c",
        "é.é.é",
        "eyJhbGciOiJSUzI1NiJ9.e30",
        "e30.e30.e30",
        "bnVsbA.e30.AA",
        "W10.e30.AA",
        " " + "a.b.c",
        "a.b.c\n",
        # a JWE (five segments) is refused too
        "eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d",
    ],
)
async def test_garbage_tokens(verifier: TokenVerifier, garbage: str) -> None:
    await rejected(verifier, garbage)


async def test_claims_that_are_not_an_object(idp: StubIdp, verifier: TokenVerifier) -> None:
    header = b64(json.dumps({"alg": "RS256", "kid": "key-1"}).encode())
    payload = b64(b"[1, 2]")
    assert "claims" in await rejected(verifier, f"{header}.{payload}.AAAA")


async def test_no_kid_or_critical_headers(idp: StubIdp, verifier: TokenVerifier) -> None:
    claims = idp.access_claims()
    assert "kid" in await rejected(verifier, forge({"alg": "RS256"}, claims, b"\x00"))
    token = forge({"alg": "RS256", "kid": "key-1", "crit": ["exp"], "exp": 1}, claims, b"\x00")
    assert "crit" in await rejected(verifier, token)


async def test_unknown_kid_then_rotated_key(idp: StubIdp) -> None:
    clock = FakeClock()
    verifier = TokenVerifier([config(idp)], jwks_min_refresh_seconds=60, clock=clock)
    await verifier.verify_access_token(idp.access_token(CLIENT))
    assert idp.counts["jwks"] == 1

    # a token with a kid nobody published: one refresh (a rotation may have just happened),
    # then no other fetch within the interval
    stranger = rsa_key("never-published")
    clock.now += 5
    assert "kid" in await rejected(verifier, idp.sign(idp.access_claims(), key=stranger))
    assert "kid" in await rejected(verifier, idp.sign(idp.access_claims(), key=stranger))
    assert idp.counts["jwks"] == 2

    # the IdP rotates; past the interval the unknown kid triggers exactly one refresh
    idp.rotate("key-2")
    clock.now += 61
    verified = await verifier.verify_access_token(idp.access_token(CLIENT))
    assert verified.subject == idp.subject and idp.counts["jwks"] == 3
    # the old key is gone from the JWKS now: its tokens are refused, without refetching
    old = idp.sign(idp.access_claims(), key=stranger)
    for i in range(20):  # a flood of random kids
        clock.now += 1
        assert "kid" in await rejected(
            verifier, idp.sign(idp.access_claims(), key=rsa_key(f"random-{i}"))
        )
    assert "kid" in await rejected(verifier, old)
    assert idp.counts["jwks"] == 3
    await verifier.aclose()


async def test_concurrent_unknown_kids_share_one_refresh(idp: StubIdp) -> None:
    clock = FakeClock()
    verifier = TokenVerifier([config(idp)], clock=clock)
    await verifier.verify_access_token(idp.access_token(CLIENT))
    idp.rotate("key-2")
    clock.now += 120
    tokens = [idp.access_token(CLIENT) for _ in range(10)]
    results = await asyncio.gather(*(verifier.verify_access_token(t) for t in tokens))
    assert len(results) == 10 and idp.counts["jwks"] == 2
    await verifier.aclose()


async def test_keys_are_refetched_after_their_max_age(idp: StubIdp) -> None:
    clock = FakeClock()
    verifier = TokenVerifier([config(idp)], jwks_max_age_seconds=600, clock=clock)
    await verifier.verify_access_token(idp.access_token(CLIENT))
    clock.now += 601
    await verifier.verify_access_token(idp.access_token(CLIENT))
    assert idp.counts["jwks"] == 2
    await verifier.aclose()


async def test_unreachable_idp(unused_port: int) -> None:
    issuer = f"http://127.0.0.1:{unused_port}{REALM}"
    verifier = TokenVerifier([IssuerConfig(issuer, frozenset({CLIENT}))])
    idp = StubIdp(issuer=issuer)
    with pytest.raises(IdpUnavailable) as info:
        await verifier.verify_access_token(idp.access_token(CLIENT))
    assert "could not be fetched" in info.value.reason
    await verifier.aclose()


async def test_plain_http_issuer_off_loopback_is_refused() -> None:
    with pytest.raises(ValueError, match="not https"):
        TokenVerifier([IssuerConfig("http://psc.example/realm", frozenset({CLIENT}))])


async def test_discovery_naming_another_issuer(idp: StubIdp) -> None:
    lying = TokenVerifier([config(idp, issuer=idp.issuer + "/x")])
    claims = idp.access_claims(iss=idp.issuer + "/x")
    with pytest.raises(IdpUnavailable):
        await lying.verify_access_token(idp.sign(claims))
    await lying.aclose()


async def test_standard_discovery_path_is_the_fallback() -> None:
    with running_idp(StubIdp(discovery_path="/.well-known/openid-configuration")) as idp:
        verifier = TokenVerifier([config(idp)])
        await verifier.verify_access_token(idp.access_token(CLIENT))
        await verifier.aclose()


# ---- ID tokens ----------------------------------------------------------------------------


async def test_id_token(idp: StubIdp, verifier: TokenVerifier) -> None:
    token = idp.id_token(CLIENT, "n-123")
    verified = await verifier.verify_id_token(token, client_id=CLIENT, nonce="n-123")
    assert verified.subject == idp.subject and verified.client_id == CLIENT


async def id_rejected(verifier: TokenVerifier, token: str, nonce: str = "n-123") -> str:
    with pytest.raises(TokenRejected) as info:
        await verifier.verify_id_token(token, client_id=CLIENT, nonce=nonce)
    return info.value.reason


async def test_id_token_bad_inputs(idp: StubIdp, verifier: TokenVerifier) -> None:
    assert "nonce" in await id_rejected(verifier, idp.id_token(CLIENT, "n-123"), "other")
    assert "nonce" in await id_rejected(verifier, idp.id_token(CLIENT, None))
    assert "aud" in await id_rejected(verifier, idp.id_token("other-app", "n-123", azp=None))
    assert "azp" in await id_rejected(
        verifier, idp.id_token(CLIENT, "n-123", aud=[CLIENT, "x"], azp="x")
    )
    assert "iat" in await id_rejected(verifier, idp.id_token(CLIENT, "n-123", iat=None))
    assert "sub" in await id_rejected(verifier, idp.id_token(CLIENT, "n-123", sub=None))
    assert "acr" in await id_rejected(verifier, idp.id_token(CLIENT, "n-123", acr=None))
    expired = idp.id_token(CLIENT, "n-123", exp=int(time.time()) - 100)
    assert "expired" in await id_rejected(verifier, expired)


async def test_token_types_are_not_confused(idp: StubIdp, verifier: TokenVerifier) -> None:
    id_token = idp.id_token(CLIENT, "n-123")
    assert "typ" in await rejected(verifier, id_token)
    assert "typ" in await rejected(verifier, idp.access_token(CLIENT, typ="Refresh"))
    assert "typ" in await id_rejected(verifier, idp.access_token(CLIENT, aud=CLIENT, nonce="n-123"))
    # tokens without typ (not Keycloak) are judged on their other claims
    await verifier.verify_access_token(idp.access_token(CLIENT, typ=None))


class FakeClock:
    """The JWKS caches' monotonic clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def unused_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- anything at all is refused cleanly ----------------------------------------------------


def _containers(inner: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4)


def _encoded(value: object) -> str:
    return b64(json.dumps(value).encode())


_json = st.none() | st.booleans() | st.integers() | st.text(max_size=20)
_b64_json = st.recursive(_json, _containers, max_leaves=8).map(_encoded)
_segment = _b64_json | st.text("ABCabc019-_", max_size=30)


_NOWHERE = "https://psc.invalid/realm"
# One verifier for every example: it makes no network call, so it never binds to a loop.
_OFFLINE = TokenVerifier([IssuerConfig(_NOWHERE, frozenset({CLIENT}))])


@settings(max_examples=300, deadline=None)
@given(token=st.text(max_size=300) | st.lists(_segment, min_size=1, max_size=5).map(".".join))
def test_any_input_is_a_clean_refusal(token: str) -> None:
    """Whatever arrives, the only outcome is TokenRejected (no other exception), and no
    network call is made for an issuer that is not configured."""

    async def check() -> None:
        with pytest.raises(TokenRejected):
            await _OFFLINE.verify_access_token(token)

    asyncio.run(check())
    assert _OFFLINE.jwks[_NOWHERE].fetches == 0
