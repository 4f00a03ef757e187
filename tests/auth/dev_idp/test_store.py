"""The dev IdP's memory: codes expire and are single use, replays revoke, assertion ids and
nonces are remembered."""

from __future__ import annotations

from auth.dev_idp.store import AuthorizationCode, Memory


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _code(
    clock: Clock, value: str = "c1", client_id: str = "web", ttl: float = 60
) -> AuthorizationCode:
    return AuthorizationCode(
        code=value,
        client_id=client_id,
        redirect_uri="http://127.0.0.1:8080/cb",
        scope="openid",
        subject="f:x",
        nonce="n1",
        code_challenge="c" * 43,
        code_challenge_method="S256",
        auth_time=int(clock.now),
        acr="eidas1",
        expires_at=clock.now + ttl,
    )


def test_a_code_is_taken_once() -> None:
    clock = Clock()
    memory = Memory(clock)
    memory.save_code(_code(clock))
    assert memory.take_code("c1", "web") is not None
    assert memory.take_code("c1", "web") is None


def test_an_expired_code_is_refused() -> None:
    clock = Clock()
    memory = Memory(clock)
    memory.save_code(_code(clock, ttl=60))
    clock.now += 61
    assert memory.take_code("c1", "web") is None


def test_a_code_of_another_client_is_refused_and_stays_usable() -> None:
    clock = Clock()
    memory = Memory(clock)
    memory.save_code(_code(clock))
    assert memory.take_code("c1", "other") is None
    assert memory.take_code("c1", "web") is not None


def test_replaying_a_code_revokes_its_tokens() -> None:
    clock = Clock()
    memory = Memory(clock)
    memory.save_code(_code(clock))
    assert memory.take_code("c1", "web") is not None
    memory.link_token("c1", "jti-1")
    assert not memory.is_revoked("jti-1")
    assert memory.take_code("c1", "web") is None
    assert memory.is_revoked("jti-1")


def test_nonces_of_issued_codes_are_remembered() -> None:
    clock = Clock()
    memory = Memory(clock)
    assert not memory.nonce_used("web", "n1")
    memory.save_code(_code(clock))
    assert memory.nonce_used("web", "n1")
    assert not memory.nonce_used("other", "n1")


def test_client_assertion_ids_are_accepted_once_until_they_expire() -> None:
    clock = Clock()
    memory = Memory(clock)
    assert memory.first_assertion("sys", "a1", clock.now + 60)
    assert not memory.first_assertion("sys", "a1", clock.now + 60)
    assert memory.first_assertion("other", "a1", clock.now + 60)
    clock.now += 61
    assert memory.first_assertion(
        "sys", "a1", clock.now + 60
    )  # expired assertions are refused anyway
