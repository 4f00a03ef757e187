"""Authlib's grants and client authentication, filled in for the dev IdP.

- the authorization code grant, with PKCE **required and S256 only** (PSC-style
  confidential clients still use it; ``plain`` is refused), ``acr_values=eidas1`` and the
  OpenID Connect ID token (nonce passed through);
- the client credentials grant for systems;
- ``private_key_jwt`` client authentication (RFC 7523), next to Authlib's built-in
  ``client_secret_basic``/``client_secret_post``/``none``.

Each class only answers the questions Authlib leaves open (where codes are kept, which key
signs, which claims go in); the protocol checks are Authlib's.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from authlib.oauth2.rfc6749 import InvalidRequestError, OAuth2Request
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant, ClientCredentialsGrant
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core.grants import OpenIDCode
from joserfc.jwk import KeySet, RSAKey

from auth.dev_idp.clients import Client
from auth.dev_idp.fixtures import Professional, professional_by_subject
from auth.dev_idp.keys import ALGORITHM
from auth.dev_idp.store import AuthorizationCode
from auth.dev_idp.tokens import ACR, TokenIssuer

SECRET_METHODS: tuple[str, ...] = ("client_secret_basic", "client_secret_post", "private_key_jwt")


class CodeGrant(AuthorizationCodeGrant):
    """Codes live in the IdP's memory, are single use and expire after ``code_ttl``."""

    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = [*SECRET_METHODS, "none"]

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        issuer: TokenIssuer = self.server.tokens
        data = request.payload.data
        user: Professional = request.user
        now = time.time()
        issuer.memory.save_code(
            AuthorizationCode(
                code=code,
                client_id=request.client.client_id,
                redirect_uri=request.payload.redirect_uri,
                scope=request.scope,
                subject=user.subject,
                nonce=data.get("nonce"),
                code_challenge=data["code_challenge"],
                code_challenge_method=data["code_challenge_method"],
                auth_time=int(now),
                acr=ACR,
                expires_at=now + issuer.config.code_ttl,
            )
        )

    def query_authorization_code(self, code: str, client: Client) -> AuthorizationCode | None:
        issuer: TokenIssuer = self.server.tokens
        return issuer.memory.take_code(code, client.client_id)

    def delete_authorization_code(self, authorization_code: AuthorizationCode) -> None:
        """Nothing left to do: :meth:`query_authorization_code` took the code out already."""

    def authenticate_user(self, authorization_code: AuthorizationCode) -> Professional | None:
        return professional_by_subject(authorization_code.subject)


class S256Required(CodeChallenge):
    """PKCE on every authorization request, with S256: a missing challenge or ``plain`` is
    an ``invalid_request`` (Authlib's own default lets confidential clients skip PKCE)."""

    SUPPORTED_CODE_CHALLENGE_METHOD: ClassVar[list[str]] = ["S256"]
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"

    def __init__(self) -> None:
        super().__init__(required=True)

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: missing 'code_challenge'")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("'code_challenge_method' must be S256")
        super().validate_code_challenge(grant, redirect_uri)


class Eidas1:
    """``acr_values``: PSC authenticates at ``eidas1`` (and RPs must ask for it); a request
    that names only other levels cannot be satisfied."""

    def __call__(self, grant: Any) -> None:
        grant.register_hook("after_validate_authorization_request_payload", self.validate)

    def validate(self, grant: Any, redirect_uri: str) -> None:
        requested = grant.request.payload.data.get("acr_values")
        if requested and ACR not in requested.split():
            raise InvalidRequestError(f"unsupported acr_values: only {ACR!r} is offered")


class PscOpenIDCode(OpenIDCode):
    """The ID token: signed with the current key (``kid`` in the header), ``aud`` and
    ``azp`` the client, ``nonce``, ``acr``, ``auth_time`` and ``at_hash`` by Authlib."""

    def __init__(self, issuer: TokenIssuer) -> None:
        super().__init__(require_nonce=False)
        self.issuer = issuer
        self._signing_key: RSAKey | None = None

    def exists_nonce(self, nonce: str, request: OAuth2Request) -> bool:
        return self.issuer.memory.nonce_used(request.payload.client_id, nonce)

    def get_client_algorithm(self, client: Client) -> str:
        return ALGORITHM

    def resolve_client_private_key(self, client: Client) -> RSAKey:
        # the key chosen by get_encode_header, so header kid and signature always match
        return self._signing_key or self.issuer.keys.current

    def get_encode_header(self, client: Client) -> dict[str, str]:
        self._signing_key = self.issuer.keys.current
        return {"alg": ALGORITHM, "typ": "JWT", "kid": self._signing_key.kid or ""}

    def get_client_claims(self, client: Client) -> dict[str, Any]:
        now = int(time.time())
        return {
            "iss": self.issuer.issuer,
            "typ": "ID",  # Keycloak marks its ID tokens (access tokens: "Bearer")
            "aud": client.client_id,
            "azp": client.client_id,
            "iat": now,
            "exp": now + self.issuer.config.id_token_ttl,
        }

    def generate_user_info(self, user: Professional, scope: str) -> dict[str, Any]:
        info = user.userinfo()
        names = ("sub", "preferred_username", "given_name", "family_name", "SubjectNameID")
        return {name: info[name] for name in names}


class ClientCredentials(ClientCredentialsGrant):
    """System tokens: a confidential client asks with its secret or a signed assertion."""

    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = list(SECRET_METHODS)


class PrivateKeyJwt(JWTBearerClientAssertion):
    """RFC 7523 client assertions, checked against the client's registered public keys;
    an assertion id (``jti``) is accepted once."""

    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self, issuer: TokenIssuer) -> None:
        super().__init__(validate_jti=True, leeway=30)
        self.issuer = issuer

    def get_audiences(self) -> list[str]:
        base = self.issuer.issuer
        protocol = f"{base}/protocol/openid-connect"
        return [base, f"{protocol}/token", f"{protocol}/token/introspect"]

    def validate_jti(self, claims: dict[str, Any], jti: str) -> bool:
        expires_at = float(claims.get("exp", time.time() + 300))
        return self.issuer.memory.first_assertion(str(claims["sub"]), str(jti), expires_at)

    def resolve_client_public_key(self, client: Client) -> KeySet:
        return KeySet.import_key_set(client.config.jwks or {"keys": []})  # type: ignore[arg-type]
