"""The PSC login (code + PKCE S256, state, nonce, confidential client) against a stub PSC
over real loopback HTTP: the happy paths for each client authentication and userinfo format,
and each bad login of the issue (state mismatch, replayed code, PKCE mismatch...)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from joserfc.jwk import ECKey, RSAKey

from auth.errors import IdpUnavailable, LoginFailed
from auth.oidc import LoginRequest, OidcClient, OidcClientConfig
from auth.tokens import IssuerConfig, TokenVerifier
from tests.auth.psc_stub import NATIONAL_ID, REALM, Client, StubIdp, b64, running_idp, s256

CLIENT, SECRET = "sas-fhir", "s3cret-of-the-client"
REDIRECT = "http://127.0.0.1:8443/auth/callback"


@pytest.fixture
def idp() -> Iterator[StubIdp]:
    with running_idp() as idp:
        idp.clients[CLIENT] = Client(secret=SECRET)
        yield idp


@pytest.fixture
async def client(idp: StubIdp) -> AsyncIterator[OidcClient]:
    c = OidcClient(OidcClientConfig(idp.issuer, CLIENT, client_secret=SECRET))
    yield c
    await c.aclose()


async def browse(url: str) -> dict[str, str]:
    """The browser's trip to PSC and back: the query of the redirect to our callback."""
    async with httpx.AsyncClient() as browser:
        answer = await browser.get(url)
    assert answer.status_code == 302, answer.text
    location = answer.headers["location"]
    assert location.startswith(REDIRECT + "?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def login(client: OidcClient) -> tuple[LoginRequest, dict[str, str]]:
    started = await client.start_login(REDIRECT)
    return started, await browse(started.url)


async def failed(client: OidcClient, started: LoginRequest, back: dict[str, str]) -> str:
    with pytest.raises(LoginFailed) as info:
        await client.finish_login(
            code=back["code"], state=back["state"], expected=started, redirect_uri=REDIRECT
        )
    assert back["code"] not in info.value.reason
    return info.value.reason


async def test_the_authorization_url(idp: StubIdp, client: OidcClient) -> None:
    started = await client.start_login(REDIRECT)
    url = urlsplit(started.url)
    assert (
        f"{url.scheme}://{url.netloc}{url.path}" == idp.issuer.removesuffix(REALM) + "/wallet/auth"
    )
    q = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert q["response_type"] == "code" and q["client_id"] == CLIENT
    assert q["scope"] == "openid scope_all" and q["acr_values"] == "eidas1"
    assert q["redirect_uri"] == REDIRECT
    assert q["state"] == started.state and q["nonce"] == started.nonce
    assert q["code_challenge_method"] == "S256"
    assert q["code_challenge"] == s256(started.code_verifier)
    assert "code_verifier" not in q and SECRET not in started.url
    assert 43 <= len(started.code_verifier) <= 128
    again = await client.start_login(REDIRECT)
    assert len({started.state, again.state, started.nonce, again.nonce}) == 4
    assert again.code_verifier != started.code_verifier


async def test_login_with_client_secret_basic(idp: StubIdp, client: OidcClient) -> None:
    started, back = await login(client)
    result = await client.finish_login(
        code=back["code"], state=back["state"], expected=started, redirect_uri=REDIRECT
    )
    p = result.principal
    assert p.national_id == NATIONAL_ID and p.rpps == "10002345678"
    assert (p.given_name, p.family_name) == ("Jeanne", "MARTIN")
    assert p.subject == idp.subject and p.issuer == idp.issuer
    assert p.acr == "eidas1" and p.client_id == CLIENT
    assert p.scopes == {"openid", "scope_all"}
    assert p.professions[0].code == "10" and p.professions[0].specialties == ("SM54",)
    assert p.roles == ("10^1.2.250.1.213.1.1.5.5",)
    assert result.id_token.count(".") == 2 and result.access_token in idp.access_tokens
    assert idp.counts["token"] == 1 and idp.counts["userinfo"] == 1


@pytest.mark.parametrize("kind", ["post", "rsa", "ec"])
async def test_other_client_authentications(idp: StubIdp, kind: str) -> None:
    if kind == "post":
        config = OidcClientConfig(
            idp.issuer,
            CLIENT,
            client_secret=SECRET,
            token_endpoint_auth_method="client_secret_post",
        )
    else:
        key = (
            RSAKey.generate_key(2048, parameters={"kid": "client-key"})
            if kind == "rsa"
            else ECKey.generate_key("P-256", parameters={"kid": "client-key"})
        )
        idp.clients["jwt-client"] = Client(public_jwk=key.as_dict(private=False))
        config = OidcClientConfig(
            idp.issuer, "jwt-client", private_key_jwk=key.as_dict(private=True)
        )
    client = OidcClient(config)
    started, back = await login(client)
    result = await client.finish_login(
        code=back["code"], state=back["state"], expected=started, redirect_uri=REDIRECT
    )
    assert result.principal.national_id == NATIONAL_ID
    await client.aclose()


async def test_a_wrong_client_secret(idp: StubIdp) -> None:
    client = OidcClient(OidcClientConfig(idp.issuer, CLIENT, client_secret="wrong"))
    started, back = await login(client)
    assert "invalid_client" in await failed(client, started, back)
    await client.aclose()


async def test_a_private_key_the_idp_does_not_know(idp: StubIdp) -> None:
    idp.clients["jwt-client"] = Client(public_jwk=RSAKey.generate_key(2048).as_dict(private=False))
    other = RSAKey.generate_key(2048)
    client = OidcClient(
        OidcClientConfig(idp.issuer, "jwt-client", private_key_jwk=other.as_dict(private=True))
    )
    started, back = await login(client)
    assert "invalid_client" in await failed(client, started, back)
    await client.aclose()


async def test_signed_userinfo(idp: StubIdp, client: OidcClient) -> None:
    idp.userinfo_format = "jwt"
    started, back = await login(client)
    result = await client.finish_login(
        code=back["code"], state=back["state"], expected=started, redirect_uri=REDIRECT
    )
    assert result.principal.national_id == NATIONAL_ID


async def test_state_mismatch_fails_before_any_network_call(
    idp: StubIdp, client: OidcClient
) -> None:
    started, back = await login(client)
    back["state"] = back["state"][:-1] + ("A" if back["state"][-1] != "A" else "B")
    assert "state" in await failed(client, started, back)
    assert idp.counts["token"] == 0
    # the genuine answer still works afterwards (nothing was consumed)
    back["state"] = started.state
    await client.finish_login(
        code=back["code"], state=back["state"], expected=started, redirect_uri=REDIRECT
    )


async def test_an_empty_expected_state_never_matches(idp: StubIdp, client: OidcClient) -> None:
    started, back = await login(client)
    assert "state" in await failed(client, replace(started, state=""), {**back, "state": ""})
    assert idp.counts["token"] == 0


async def test_a_verifier_shared_with_another_issuer(idp: StubIdp) -> None:
    with running_idp() as other:
        other.keys = idp.keys  # the other issuer would sign with the same keys
        verifier = TokenVerifier(
            [IssuerConfig(i.issuer, frozenset({CLIENT})) for i in (idp, other)]
        )
        client = OidcClient(
            OidcClientConfig(idp.issuer, CLIENT, client_secret=SECRET), verifier=verifier
        )
        idp.id_token_extra["iss"] = other.issuer
        started, back = await login(client)
        assert "another issuer" in await failed(client, started, back)
        with pytest.raises(ValueError):
            OidcClient(
                OidcClientConfig("https://psc.example/r", CLIENT, client_secret=SECRET),
                verifier=verifier,
            )
        await client.aclose()


async def test_replayed_authorization_code(idp: StubIdp, client: OidcClient) -> None:
    started, back = await login(client)
    await client.finish_login(
        code=back["code"], state=back["state"], expected=started, redirect_uri=REDIRECT
    )
    reason = await failed(client, started, back)
    assert "invalid_grant" in reason and "refused the authorization code" in reason


async def test_pkce_verifier_mismatch(idp: StubIdp, client: OidcClient) -> None:
    started, back = await login(client)
    wrong = replace(started, code_verifier=b64(hashlib.sha256(b"guess").digest()) * 2)
    reason = await failed(client, wrong, back)
    assert "invalid_grant" in reason and "PKCE" in reason


async def test_a_different_redirect_uri(idp: StubIdp, client: OidcClient) -> None:
    started, back = await login(client)
    with pytest.raises(LoginFailed, match="invalid_grant"):
        await client.finish_login(
            code=back["code"],
            state=back["state"],
            expected=started,
            redirect_uri="http://127.0.0.1:8443/elsewhere",
        )


async def test_nonce_mismatch(idp: StubIdp, client: OidcClient) -> None:
    started, back = await login(client)
    assert "nonce" in await failed(client, replace(started, nonce="another-login"), back)


async def test_id_token_without_acr(idp: StubIdp, client: OidcClient) -> None:
    idp.acr = None
    started, back = await login(client)
    assert "acr" in await failed(client, started, back)


async def test_at_hash(idp: StubIdp, client: OidcClient) -> None:
    idp.id_token_extra["at_hash"] = lambda access: b64(
        hashlib.sha256(access.encode()).digest()[:16]
    )
    started, back = await login(client)
    await client.finish_login(
        code=back["code"], state=back["state"], expected=started, redirect_uri=REDIRECT
    )
    idp.id_token_extra["at_hash"] = "AAAAAAAAAAAAAAAAAAAAAA"
    started, back = await login(client)
    assert "at_hash" in await failed(client, started, back)


@pytest.mark.parametrize("bad", ["12345", "8123", "81000234567X", "9" + "1" * 11, 810002345678])
async def test_userinfo_with_a_malformed_national_id(
    idp: StubIdp, client: OidcClient, bad: object
) -> None:
    idp.userinfo["SubjectNameID"] = bad
    started, back = await login(client)
    assert "SubjectNameID" in await failed(client, started, back)


async def test_userinfo_about_someone_else(idp: StubIdp, client: OidcClient) -> None:
    idp.userinfo["sub"] = "another-person"
    started, back = await login(client)
    assert "sub" in await failed(client, started, back)


async def test_end_session_url(idp: StubIdp, client: OidcClient) -> None:
    url = await client.end_session_url("the.id.token", "http://127.0.0.1:8443/bye", "s1")
    parts = urlsplit(url)
    assert url.startswith(idp.issuer + "/protocol/openid-connect/logout?")
    q = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert q == {
        "id_token_hint": "the.id.token",
        "post_logout_redirect_uri": "http://127.0.0.1:8443/bye",
        "state": "s1",
        "client_id": CLIENT,
    }


async def test_an_unreachable_idp(unused_port: int) -> None:
    issuer = f"http://127.0.0.1:{unused_port}{REALM}"
    client = OidcClient(OidcClientConfig(issuer, CLIENT, client_secret=SECRET))
    with pytest.raises(IdpUnavailable):
        await client.start_login(REDIRECT)
    await client.aclose()


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"private_key_jwk": {"kty": "RSA", "n": "AQAB", "e": "AQAB"}},  # a public key
        {"private_key_jwk": {"kty": "oct", "k": b64(b"a shared secret of 32 bytes.....")}},
        {"private_key_jwk": {"nonsense": True}},
        {"client_secret": SECRET, "token_endpoint_auth_method": "none"},
    ],
)
def test_client_credentials_are_checked_at_start(kw: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        OidcClient(OidcClientConfig("https://psc.example/realm", CLIENT, **kw))  # type: ignore[arg-type]


@pytest.fixture
def unused_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
