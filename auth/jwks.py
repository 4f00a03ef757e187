"""The signing keys of one issuer (its JWKS), cached and refreshed with care.

Keys come from the discovery document's ``jwks_uri``. They are kept for ``max_age`` seconds;
a token naming a ``kid`` we do not hold triggers one refresh (the IdP rotated its keys), but
at most one such refresh per ``min_refresh_interval`` seconds: a flood of tokens with random
``kid``s must not turn us into a client hammering the IdP. The first fetch and the refresh of
stale keys do not count against that budget, so a rotation just after start-up is seen at once.
Concurrent refreshes are merged into one fetch, and a failed refresh keeps the keys we had.
"""

from __future__ import annotations

import asyncio
import time
import warnings
from collections.abc import Callable

import httpx
import structlog
from joserfc.errors import JoseError, SecurityWarning
from joserfc.jwk import ECKey, KeySet, RSAKey

from auth.discovery import Discovery, get_json
from auth.errors import IdpUnavailable, TokenRejected

log = structlog.get_logger(__name__)

PublicKey = RSAKey | ECKey
# Which key type and curve each allowed signature algorithm needs.
ALG_KEY_TYPES: dict[str, tuple[str, str | None]] = {
    "RS256": ("RSA", None),
    "PS256": ("RSA", None),
    "ES256": ("EC", "P-256"),
}
MIN_RSA_BITS = 2048


class JwksCache:
    """One issuer's public signing keys."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        discovery: Discovery,
        *,
        min_refresh_interval: float = 60.0,
        max_age: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.http, self.discovery = http, discovery
        self.min_refresh_interval, self.max_age, self.clock = min_refresh_interval, max_age, clock
        self._keys: dict[str, PublicKey] = {}
        self._loaded = False
        self._attempted_at: float | None = None  # last fetch attempt, successful or not
        self._kid_attempted_at: float | None = None  # last attempt caused by an unknown kid
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()
        self.fetches = 0  # how many times the JWKS was requested (for logs and tests)

    @property
    def issuer(self) -> str:
        return self.discovery.issuer

    async def key_for(self, kid: str, alg: str) -> PublicKey:
        """The key ``kid`` for ``alg``; unknown after at most one allowed refresh →
        ``TokenRejected``; IdP unreachable and no keys at all → ``IdpUnavailable``."""
        stale = not self._loaded or self.clock() - self._fetched_at >= self.max_age
        if stale and self._may_refresh(self._attempted_at):
            await self._refresh(reason="expired" if self._loaded else "first use")
        if not self._loaded:
            raise IdpUnavailable(f"the signing keys of {self.issuer} could not be fetched")
        key = self._keys.get(kid)
        if key is None and self._lock.locked():  # a refresh is under way: its keys may do
            async with self._lock:
                key = self._keys.get(kid)
        if key is None and self._may_refresh(self._kid_attempted_at):
            self._kid_attempted_at = self.clock()
            await self._refresh(reason="unknown kid")
            key = self._keys.get(kid)
        if key is None:
            raise TokenRejected(f"the token's signing key (kid) is not a key of {self.issuer}")
        kty, crv = ALG_KEY_TYPES[alg]
        if key.key_type != kty or (crv is not None and key.get("crv") != crv):
            raise TokenRejected(f"the token's algorithm {alg} does not fit its signing key")
        if key.get("alg") not in (None, alg):
            raise TokenRejected(f"the signing key is published for another algorithm than {alg}")
        return key

    def _may_refresh(self, last: float | None) -> bool:
        return last is None or self.clock() - last >= self.min_refresh_interval

    async def _refresh(self, *, reason: str) -> None:
        attempted = self._attempted_at
        async with self._lock:
            if self._attempted_at != attempted:  # another task fetched while we waited
                return
            self._attempted_at = self.clock()
            self.fetches += 1
            try:
                keys = await self._fetch()
            except IdpUnavailable as exc:
                log.warning("jwks fetch failed", issuer=self.issuer, why=reason, reason=exc.reason)
                return
            log.info("jwks fetched", issuer=self.issuer, why=reason, kids=sorted(keys))
            self._keys, self._loaded, self._fetched_at = keys, True, self.clock()

    async def _fetch(self) -> dict[str, PublicKey]:
        url = await self.discovery.endpoint("jwks_uri")
        document = await get_json(self.http, url, "JWKS")
        entries = document.get("keys")
        if not isinstance(entries, list):
            raise IdpUnavailable(f"the JWKS of {self.issuer} has no keys")
        keys: dict[str, PublicKey] = {}
        for entry in entries:
            key = _signing_key(entry)
            if key is not None and key.kid is not None:
                keys.setdefault(key.kid, key)
        if not keys:
            raise IdpUnavailable(f"the JWKS of {self.issuer} has no usable signing key")
        return keys


def _signing_key(entry: object) -> PublicKey | None:
    """A public RSA (≥ 2048 bits) or EC P-256 signature key with a ``kid``, or None: keys for
    encryption, other types, private halves and broken entries are skipped."""
    if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
        return None
    if entry.get("use") not in (None, "sig") or entry.get("kty") not in ("RSA", "EC"):
        return None
    if any(name in entry for name in ("d", "p", "q")):  # a private key published by mistake
        return None
    try:
        with warnings.catch_warnings():  # a weak key is skipped below, not warned about
            warnings.simplefilter("ignore", SecurityWarning)
            key = KeySet.import_key_set({"keys": [entry]}).keys[0]
    except (JoseError, ValueError, TypeError):
        return None
    if isinstance(key, RSAKey) and key.raw_value.key_size >= MIN_RSA_BITS:
        return key
    if isinstance(key, ECKey) and key.get("crv") == "P-256":
        return key
    return None
