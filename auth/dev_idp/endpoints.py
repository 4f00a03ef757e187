"""Authlib's endpoints beside the token endpoint: introspection, userinfo, end session.

- Introspection (RFC 7662): any registered confidential client may ask (PSC lets a resource
  server introspect the tokens it receives); an unknown client is ``invalid_client`` (401),
  an expired, revoked or foreign token is ``{"active": false}``.
- Userinfo: a bearer access token with the ``openid`` scope gives the PSC-shaped claims of
  the professional it was issued for.
- End session (OIDC RP-initiated logout): redirects to ``post_logout_redirect_uri`` only when
  the client registered it; with ``id_token_hint`` or an explicit ``client_id``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from authlib.consts import default_json_headers
from authlib.oauth2.rfc6749 import OAuth2Request, ResourceProtector
from authlib.oauth2.rfc6750 import BearerTokenValidator, InvalidTokenError
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oidc.core import UserInfoEndpoint
from authlib.oidc.rpinitiated import EndSessionEndpoint, EndSessionRequest
from joserfc.jwk import KeySet

from auth.dev_idp.clients import Client
from auth.dev_idp.grants import SECRET_METHODS
from auth.dev_idp.keys import ALGORITHM
from auth.dev_idp.store import IssuedToken
from auth.dev_idp.tokens import TokenIssuer


class Introspection(IntrospectionEndpoint):
    CLIENT_AUTH_METHODS: ClassVar[list[str]] = list(SECRET_METHODS)

    def __init__(self, tokens: TokenIssuer) -> None:
        super().__init__()
        self.tokens = tokens

    def query_token(self, token_string: str, token_type_hint: str | None) -> IssuedToken | None:
        # the hint is only a hint (RFC 7662 §2.1); this IdP issues access tokens only
        return self.tokens.read_access_token(token_string)

    def check_permission(self, token: IssuedToken, client: Client, request: Any) -> bool:
        return True

    def introspect_token(self, token: IssuedToken) -> dict[str, Any]:
        claims = token.claims
        payload = {
            **claims,
            "active": True,
            "client_id": claims.get("azp"),
            "token_type": "Bearer",
        }
        if "preferred_username" in claims:
            payload["username"] = claims["preferred_username"]
        return payload


class _AccessTokens(BearerTokenValidator):
    def __init__(self, tokens: TokenIssuer) -> None:
        super().__init__(realm="esante-wallet")
        self.tokens = tokens

    def authenticate_token(self, token_string: str) -> IssuedToken | None:
        return self.tokens.read_access_token(token_string)


class UserInfo(UserInfoEndpoint):
    def __init__(self, tokens: TokenIssuer) -> None:
        protector = ResourceProtector()
        protector.register_token_validator(_AccessTokens(tokens))
        super().__init__(resource_protector=protector)
        self.tokens = tokens

    def __call__(self, request: OAuth2Request) -> tuple[int, Any, list[tuple[str, str]]]:
        # Authlib's own __call__ needs a framework's ResourceProtector.acquire_token; the
        # generic validate_request does the same checks on the request we already have
        token: IssuedToken = self.resource_protector.validate_request(["openid"], request)
        user = token.get_user()
        if user is None:  # a client credentials token: nobody to describe
            raise InvalidTokenError(description="the token was not issued to a person")
        return 200, user.userinfo(), default_json_headers

    def get_issuer(self) -> str:
        return self.tokens.issuer


class EndSession(EndSessionEndpoint):
    def __init__(self, tokens: TokenIssuer) -> None:
        super().__init__()
        self.tokens = tokens

    def get_server_jwks(self) -> KeySet:
        return self.tokens.keys.verification_keys()

    def get_algorithms(self) -> list[str]:
        return [ALGORITHM]

    def is_post_logout_redirect_uri_legitimate(
        self, request: OAuth2Request, post_logout_redirect_uri: str, client: Client, hint: Any
    ) -> bool:
        # without id_token_hint, a client that names itself may still be sent back to one of
        # its registered URIs (checked by Authlib before this): convenient in development
        return bool(request.payload.data.get("client_id") == client.client_id)

    def end_session(self, end_session_request: EndSessionRequest) -> None:
        """Nothing to end: the dev IdP keeps no login session (the page asks every time)."""
