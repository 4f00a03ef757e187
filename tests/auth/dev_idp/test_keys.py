"""Key rotation: over HTTP (old tokens verify during the grace period, new ones use the new
kid) and on the key ring with a clock (the old key leaves the JWKS after the grace)."""

from __future__ import annotations

import httpx
import pytest
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from auth.dev_idp import rotate_keys
from auth.dev_idp.keys import KeyRing
from tests.auth.dev_idp.conftest import SYSTEM, SYSTEM_SECRET, Idp, tokens_for


def _introspect(idp: Idp, token: str) -> bool:
    response = idp.http.post(
        idp.endpoint("introspection"), data={"token": token}, auth=(SYSTEM, SYSTEM_SECRET)
    )
    return bool(response.json()["active"])


def test_rotation_over_http(fresh_idp: Idp) -> None:
    idp = fresh_idp
    before = tokens_for(idp)
    old_kid = jwt.decode(before["access_token"], idp.keys()).header["kid"]

    rotated = idp.http.post(f"{idp.base}/dev/rotate")
    assert rotated.status_code == 200
    new_kid = rotated.json()["kid"]
    assert new_kid != old_kid

    published = [key["kid"] for key in idp.http.get(idp.meta["jwks_uri"]).json()["keys"]]
    assert published == [new_kid, old_kid]  # newest first, the old one kept for the grace

    # tokens signed before the rotation still verify against the served JWKS, and are active
    assert idp.verify(before["access_token"]).header["kid"] == old_kid
    assert idp.verify(before["id_token"]).header["kid"] == old_kid
    assert _introspect(idp, before["access_token"])

    after = tokens_for(idp)
    assert idp.verify(after["access_token"]).header["kid"] == new_kid
    assert idp.verify(after["id_token"]).header["kid"] == new_kid
    info = idp.http.get(
        idp.endpoint("userinfo"), headers={"Authorization": f"Bearer {after['access_token']}"}
    )
    assert info.status_code == 200


def test_rotation_from_the_app(fresh_idp: Idp) -> None:
    kid = rotate_keys(fresh_idp.app)
    assert fresh_idp.http.get(fresh_idp.meta["jwks_uri"]).json()["keys"][0]["kid"] == kid
    assert jwt.decode(tokens_for(fresh_idp)["access_token"], fresh_idp.keys()).header["kid"] == kid


async def test_rotation_endpoint_refuses_non_loopback_callers(idp: Idp) -> None:
    transport = httpx.ASGITransport(app=idp.app, client=("192.0.2.10", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://idp.test") as client:
        response = await client.post("/dev/rotate")
    assert response.status_code == 403
    assert len(idp.http.get(idp.meta["jwks_uri"]).json()["keys"]) == 1


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_retired_keys_leave_the_jwks_after_the_grace_period() -> None:
    clock = Clock()
    ring = KeyRing(grace=60, clock=clock)
    first = ring.current
    token = jwt.encode({"alg": "RS256", "kid": first.kid or ""}, {"sub": "s"}, first)
    second = ring.rotate()

    clock.now += 59
    assert [k["kid"] for k in ring.public_jwks()["keys"]] == [second, first.kid]
    assert jwt.decode(token, ring.verification_keys()).claims["sub"] == "s"

    clock.now += 2
    assert [k["kid"] for k in ring.public_jwks()["keys"]] == [second]
    with pytest.raises((JoseError, ValueError)):
        jwt.decode(token, ring.verification_keys())


def test_two_rotations_keep_each_retired_key_for_its_own_grace() -> None:
    clock = Clock()
    ring = KeyRing(grace=60, clock=clock)
    first = ring.current_kid
    second = ring.rotate()
    clock.now += 40
    third = ring.rotate()
    assert ring.current_kid == third
    clock.now += 30  # first retired 70 s ago, second 30 s ago
    kids = [k["kid"] for k in KeySet.import_key_set(ring.public_jwks()).keys]
    assert kids == [third, second]
    assert first not in kids


def test_published_keys_are_public_only() -> None:
    ring = KeyRing(grace=60)
    for key in ring.public_jwks()["keys"]:
        assert "d" not in key
