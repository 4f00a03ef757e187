"""The dev IdP's authorization server: Authlib's generic server, wired for Starlette.

Authlib's ``AuthorizationServer`` needs an integration to say how requests and responses
look (here: the already-read :class:`~auth.dev_idp.bridge.StarletteOAuth2Request` and
Starlette responses), where clients and tokens live, and which grants and endpoints exist.
"""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc6749 import AuthorizationServer, OAuth2Request
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from starlette.responses import Response

from auth.dev_idp.bridge import to_response
from auth.dev_idp.clients import Client
from auth.dev_idp.endpoints import EndSession, Introspection, UserInfo
from auth.dev_idp.grants import (
    ClientCredentials,
    CodeGrant,
    Eidas1,
    PrivateKeyJwt,
    PscOpenIDCode,
    S256Required,
)
from auth.dev_idp.tokens import TokenIssuer, token_id


class DevAuthorizationServer(AuthorizationServer):
    """Code + PKCE (with OpenID Connect), client credentials, introspection, userinfo and
    end session, all over the clients and keys of one :class:`TokenIssuer`."""

    def __init__(self, tokens: TokenIssuer) -> None:
        super().__init__()
        self.tokens = tokens
        ttl = tokens.config.access_token_ttl
        self.register_token_generator(
            "default",
            BearerTokenGenerator(tokens.access_token, expires_generator=lambda *_: ttl),
        )
        self.register_client_auth_method("private_key_jwt", PrivateKeyJwt(tokens))
        self.register_grant(CodeGrant, [S256Required(), Eidas1(), PscOpenIDCode(tokens)])
        self.register_grant(ClientCredentials)
        self.register_endpoint(Introspection(tokens))
        self.register_endpoint(UserInfo(tokens))
        self.register_endpoint(EndSession(tokens))

    def query_client(self, client_id: str) -> Client | None:
        return self.tokens.clients.get(client_id)

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        """Tokens are self-contained JWTs; only their link to the code is kept, so that a
        replayed code can revoke them."""
        code = request.authorization_code
        jti = token_id(token["access_token"])
        if code is not None and jti is not None:
            self.tokens.memory.link_token(code.code, jti)

    def create_oauth2_request(self, request: OAuth2Request) -> OAuth2Request:
        return request  # the handlers pass bridge.StarletteOAuth2Request already

    def create_json_request(self, request: Any) -> Any:
        raise NotImplementedError("no endpoint of the dev IdP takes JSON")

    def handle_response(
        self, status: int, body: Any, headers: list[tuple[str, str]] | None
    ) -> Response:
        return to_response(status, body, headers)

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        """No signal receivers: the integration hook Flask uses for blinker."""
