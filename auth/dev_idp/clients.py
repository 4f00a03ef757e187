"""A registered client as Authlib's grants and endpoints ask about it (``ClientMixin``)."""

from __future__ import annotations

import hmac
from typing import Any

from authlib.oauth2.rfc6749 import ClientMixin

from auth.dev_idp.config import ClientConfig

_SECRET_METHODS = frozenset({"client_secret_basic", "client_secret_post"})


class Client(ClientMixin):
    """Answers Authlib's questions from a :class:`ClientConfig`; exact matches only."""

    def __init__(self, config: ClientConfig) -> None:
        self.config = config

    @property
    def client_id(self) -> str:
        return self.config.client_id

    @property
    def client_metadata(self) -> dict[str, Any]:
        # read by Authlib's end-session (post_logout_redirect_uris) and userinfo endpoints
        return {"post_logout_redirect_uris": list(self.config.post_logout_redirect_uris)}

    def get_client_id(self) -> str:
        return self.config.client_id

    def get_default_redirect_uri(self) -> str | None:
        # only when unambiguous; otherwise the request must name one (OIDC always does)
        uris = self.config.redirect_uris
        return uris[0] if len(uris) == 1 else None

    def get_allowed_scope(self, scope: str | None) -> str | None:
        """All the client's scopes when it asks for none; None (``invalid_scope``) when it asks
        for one it was not registered with."""
        allowed = self.config.scopes
        if not scope:
            return " ".join(allowed)
        requested = scope.split()
        if not set(requested) <= set(allowed):
            return None
        return " ".join(dict.fromkeys(requested))

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.config.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        secret = self.config.client_secret
        return secret is not None and hmac.compare_digest(
            secret.encode("utf-8"), client_secret.encode("utf-8")
        )

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        registered = self.config.token_endpoint_auth_method
        if registered in _SECRET_METHODS:  # like Keycloak's client-secret: either way
            return method in _SECRET_METHODS
        return method == registered

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and "authorization_code" in self.config.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.config.grant_types
