"""Bearer tokens on the FHIR API: systems with client-credentials tokens, people with PSC's.

A token is checked by ``auth.tokens.TokenVerifier`` (signature from the issuer's JWKS, ``iss``,
times, ``azp`` allow-list). Then:

- its client (``azp``) is a configured system (``FHIR_SYSTEM_CLIENTS``): the caller is that
  system, with that role; its SMART scopes narrow what the role allows;
- otherwise it is a person's token from an allowed application (``FHIR_TOKEN_CLIENTS``): it
  must carry ``acr=eidas1``; PSC access tokens name a technical ``sub``, not the person, so
  the national id comes from the issuer's userinfo (asked once per token, kept until the
  token expires) and the role from the person's regulator account or ``FHIR_PERSON_ROLES``
  (``interactions/accounts.py``). Nobody there: 403.

Refusals are 401 with ``WWW-Authenticate: Bearer error="invalid_token"`` (RFC 6750 §3); an
issuer that cannot be reached is 503 (the token may be fine).
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Mapping

import structlog

from auth.errors import IdpUnavailable, TokenRejected
from auth.principal import principal_from
from auth.tokens import TokenVerifier, VerifiedToken
from auth.userinfo import fetch_userinfo
from fhir_server.core import errors
from fhir_server.core.caller import Caller
from fhir_server.core.roles import Role
from fhir_server.interactions import accounts
from fhir_server.interactions.context import Context

log = structlog.get_logger(__name__)
REALM = 'Bearer realm="fhir"'
MAX_REMEMBERED = 10_000  # people's tokens whose national id is kept (one userinfo call each)


def challenge(error: str | None = None, description: str | None = None) -> str:
    """A ``WWW-Authenticate`` value; the description never holds the token itself."""
    value = REALM
    if error:
        value += f', error="{error}"'
    if description:
        value += ', error_description="' + description.replace('"', "'")[:200] + '"'
    return value


class BearerTokens:
    def __init__(
        self,
        verifier: TokenVerifier,
        *,
        system_clients: Mapping[str, Role],
        person_roles: Mapping[str, Role],
        acr: str,
    ) -> None:
        self.verifier = verifier
        self.system_clients = dict(system_clients)
        self.person_roles = dict(person_roles)
        self.acr = acr
        # token digest -> (national id, expiry): PSC tokens live ~2 minutes and are reused
        # for a burst of requests; one userinfo call per token, not per request
        self._people: OrderedDict[bytes, tuple[str, float]] = OrderedDict()

    async def aclose(self) -> None:
        await self.verifier.aclose()

    async def caller(self, token: str, ctx: Context) -> Caller:
        try:
            verified = await self.verifier.verify_access_token(token)
        except IdpUnavailable as exc:
            log.warning("token issuer unavailable", reason=exc.reason)
            raise errors.busy(
                "the identity provider cannot be reached to check the token; retry shortly"
            ) from None
        except TokenRejected as exc:
            log.info("bearer token refused", reason=exc.reason)
            raise errors.unauthorized(
                f"the access token was refused: {exc.reason}",
                challenge=challenge("invalid_token", exc.reason),
            ) from None
        client = verified.client_id or ""
        if client in self.system_clients:
            return Caller(
                role=self.system_clients[client], client_id=client, scopes=verified.scopes
            )
        if verified.acr != self.acr:
            raise errors.unauthorized(
                f"a person's token must be issued at acr {self.acr}",
                challenge=challenge("invalid_token", f"acr {self.acr} required"),
            )
        national_id = await self._national_id(token, verified)
        role = await accounts.person_role(ctx, national_id, self.person_roles)
        if role is None:
            log.info("person without an account", user_id=national_id)
            raise errors.forbidden(
                "this professional has no active regulator account on this server and no "
                "configured role"
            )
        return Caller(role=role, client_id=client, user_id=national_id, scopes=verified.scopes)

    async def _national_id(self, token: str, verified: VerifiedToken) -> str:
        digest = hashlib.sha256(token.encode()).digest()
        now = time.time()
        known = self._people.get(digest)
        if known is not None and known[1] > now:
            return known[0]
        try:
            info = await fetch_userinfo(self.verifier, verified.issuer, token)
            principal = principal_from(verified.claims, info, error=TokenRejected)
        except IdpUnavailable as exc:
            log.warning("userinfo unavailable", reason=exc.reason)
            raise errors.busy("the identity provider's userinfo cannot be reached") from None
        except TokenRejected as exc:
            raise errors.unauthorized(
                exc.reason, challenge=challenge("invalid_token", exc.reason)
            ) from None
        if not principal.national_id:
            raise errors.unauthorized(
                "the identity provider names no national professional id for this token",
                challenge=challenge("invalid_token", "no SubjectNameID"),
            )
        self._people[digest] = (principal.national_id, verified.expires_at.timestamp())
        while len(self._people) > MAX_REMEMBERED:
            self._people.popitem(last=False)
        return principal.national_id
