"""A local identity provider compatible with Pro Santé Connect, for development and tests.

``fhir-server dev-idp`` serves it on loopback; :func:`create_app` builds the ASGI app. It
speaks OpenID Connect on PSC's (Keycloak's) paths with Authlib's authorization server:
discovery, JWKS with key rotation, authorization code + PKCE S256 with a login page listing
fictional professionals, client credentials, introspection, userinfo and logout. Tokens are
shaped like PSC's (RS256, no ``aud``, ``azp``, technical ``sub``, ``acr=eidas1``).
Never for production: anyone who can reach it can log in as any fixture professional.
"""

from auth.dev_idp.app import create_app, rotate_keys
from auth.dev_idp.config import REALM_PATH, ClientConfig, ConfigError, DevIdpConfig, load_clients
from auth.dev_idp.fixtures import PROFESSIONALS, Professional

__all__ = [
    "PROFESSIONALS",
    "REALM_PATH",
    "ClientConfig",
    "ConfigError",
    "DevIdpConfig",
    "Professional",
    "create_app",
    "load_clients",
    "rotate_keys",
]
