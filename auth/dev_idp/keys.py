"""The dev IdP's signing keys, with rotation: what its JWKS endpoint publishes.

Tokens are signed with the newest RS256 key; its ``kid`` is the key's RFC 7638 thumbprint.
:meth:`KeyRing.rotate` adds a new key and signs with it from then on, while the previous keys
stay published for a grace period so that tokens they signed still verify. That is the case a
relying party must handle: a token whose ``kid`` it has not seen yet (refresh the JWKS), and
tokens signed with the old key during the overlap.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from joserfc.jwk import KeySet, RSAKey

ALGORITHM = "RS256"
KEY_SIZE = 2048


@dataclass(frozen=True)
class _Published:
    key: RSAKey
    retired_at: float | None  # None: the current signing key


class KeyRing:
    """RS256 keys: one current signing key, and the retired ones still within their grace.

    Thread-safe: uvicorn serves from one event loop, but tests and the CLI may rotate from
    another thread.
    """

    def __init__(self, grace: float, clock: Callable[[], float] = time.time) -> None:
        self._grace = grace
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: list[_Published] = [_Published(_new_key(), None)]

    @property
    def current(self) -> RSAKey:
        """The key new tokens are signed with."""
        with self._lock:
            return self._keys[-1].key

    @property
    def current_kid(self) -> str:
        kid = self.current.kid
        assert kid is not None  # every key gets its thumbprint as kid in _new_key
        return kid

    def rotate(self) -> str:
        """Sign with a new key from now on; the others leave the JWKS after the grace period.
        Returns the new ``kid``."""
        key = _new_key()
        now = self._clock()
        with self._lock:
            self._keys = [
                _Published(p.key, now if p.retired_at is None else p.retired_at)
                for p in self._live(now)
            ]
            self._keys.append(_Published(key, None))
        assert key.kid is not None
        return key.kid

    def public_jwks(self) -> dict[str, list[dict[str, Any]]]:
        """The JWKS document: the public halves of the live keys, newest first."""
        with self._lock:
            live = self._live(self._clock())
        keys = [p.key.as_dict(private=False, use="sig", alg=ALGORITHM) for p in reversed(live)]
        return {"keys": keys}

    def verification_keys(self) -> KeySet:
        """The live keys as a key set, to verify the tokens this IdP issued."""
        with self._lock:
            live = self._live(self._clock())
        return KeySet([p.key for p in live])

    def _live(self, now: float) -> list[_Published]:
        return [p for p in self._keys if p.retired_at is None or now - p.retired_at < self._grace]


def _new_key() -> RSAKey:
    key = RSAKey.generate_key(KEY_SIZE, parameters={"use": "sig", "alg": ALGORITHM})
    key.ensure_kid()  # RFC 7638 thumbprint
    return key
