"""What a dev IdP serves: its issuer, token lifetimes and registered clients.

Clients come from a small JSON or TOML file (``--clients FILE``) or from the defaults below,
so that ``fhir-server dev-idp`` works with no file at all. The file holds a list of clients,
``{"clients": [...]}`` in JSON or ``[[clients]]`` tables in TOML, each with the fields of
:class:`ClientConfig`. Secrets here are development secrets, printed by the command; a real
deployment registers its clients with Pro Santé Connect instead. For example::

    [[clients]]
    client_id = "agenda-vendor-x"
    client_secret = "dev-secret"
    grant_types = ["client_credentials"]
    scopes = ["system/Slot.read", "system/Slot.write", "system/Schedule.write"]

    [[clients]]
    client_id = "web-app"
    token_endpoint_auth_method = "private_key_jwt"
    jwks = { keys = [{ kty = "RSA", n = "...", e = "AQAB", kid = "k1" }] }
    redirect_uris = ["http://127.0.0.1:9000/callback"]
    post_logout_redirect_uris = ["http://127.0.0.1:9000/"]
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

REALM_PATH = "/auth/realms/esante-wallet"

AuthMethod = Literal["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]
AUTH_METHODS: frozenset[str] = frozenset(
    {"client_secret_basic", "client_secret_post", "private_key_jwt", "none"}
)
GRANT_TYPES: frozenset[str] = frozenset({"authorization_code", "client_credentials"})


class ConfigError(ValueError):
    """A clients file or option the dev IdP cannot use (the message says which field)."""


@dataclass(frozen=True)
class ClientConfig:
    """One registered client, as PSC would hold it after registration.

    ``token_endpoint_auth_method`` is how it authenticates at the token and introspection
    endpoints: a secret (basic or post), ``private_key_jwt`` with ``jwks`` (its public keys),
    or ``none`` for a public client (PKCE still required).
    """

    client_id: str
    client_secret: str | None = None
    jwks: dict[str, Any] | None = None
    token_endpoint_auth_method: AuthMethod = "client_secret_basic"
    redirect_uris: tuple[str, ...] = ()
    post_logout_redirect_uris: tuple[str, ...] = ()
    grant_types: tuple[str, ...] = ("authorization_code",)
    scopes: tuple[str, ...] = ("openid", "scope_all")

    def __post_init__(self) -> None:
        where = f"client {self.client_id!r}"
        if not self.client_id:
            raise ConfigError("a client needs a client_id")
        if self.token_endpoint_auth_method not in AUTH_METHODS:
            raise ConfigError(
                f"{where}: token_endpoint_auth_method must be one of {sorted(AUTH_METHODS)}"
            )
        if self.token_endpoint_auth_method.startswith("client_secret") and not (self.client_secret):
            raise ConfigError(f"{where}: {self.token_endpoint_auth_method} needs client_secret")
        if self.token_endpoint_auth_method == "private_key_jwt" and not self.jwks:
            raise ConfigError(f"{where}: private_key_jwt needs jwks (the client's public keys)")
        unknown = set(self.grant_types) - GRANT_TYPES
        if unknown:
            raise ConfigError(f"{where}: unsupported grant_types {sorted(unknown)}")
        if "authorization_code" in self.grant_types and not self.redirect_uris:
            raise ConfigError(f"{where}: authorization_code needs at least one redirect_uri")
        if self.token_endpoint_auth_method == "none" and "client_credentials" in self.grant_types:
            raise ConfigError(f"{where}: a public client cannot use client_credentials")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClientConfig:
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown client field(s) {sorted(unknown)}")
        values = dict(data)
        for name in ("redirect_uris", "post_logout_redirect_uris", "grant_types", "scopes"):
            if name in values:
                items = values[name]
                if isinstance(items, str) or not isinstance(items, list | tuple):
                    raise ConfigError(f"{name} must be a list of strings")
                values[name] = tuple(str(item) for item in items)
        try:
            return cls(**values)
        except TypeError as exc:
            raise ConfigError(str(exc)) from None


# A confidential web client (the FHIR server's own login pages: fhir_server/api/login.py's
# callback and logged-out paths) on ``fhir-server serve``'s default port (8080, and 8443 for
# TLS); and a system client for client credentials.
DEFAULT_CLIENTS: tuple[ClientConfig, ...] = (
    ClientConfig(
        client_id="sas-fhir-server",
        client_secret="dev-secret-sas-fhir-server",
        token_endpoint_auth_method="client_secret_basic",
        redirect_uris=(
            "http://127.0.0.1:8080/auth/callback",
            "http://localhost:8080/auth/callback",
            "https://127.0.0.1:8443/auth/callback",
            "https://localhost:8443/auth/callback",
        ),
        post_logout_redirect_uris=(
            "http://127.0.0.1:8080/auth/logged-out",
            "http://localhost:8080/auth/logged-out",
            "https://127.0.0.1:8443/auth/logged-out",
            "https://localhost:8443/auth/logged-out",
        ),
        grant_types=("authorization_code",),
        scopes=("openid", "scope_all"),
    ),
    ClientConfig(
        client_id="sas-platform",
        client_secret="dev-secret-sas-platform",
        token_endpoint_auth_method="client_secret_basic",
        grant_types=("client_credentials",),
        scopes=(
            "system/*.read",
            "system/Slot.read",
            "system/Schedule.read",
            "system/Practitioner.read",
            "system/PractitionerRole.read",
            "system/Appointment.write",
        ),
    ),
)


@dataclass(frozen=True)
class DevIdpConfig:
    """Everything :func:`auth.dev_idp.create_app` needs.

    ``issuer`` None means "from the address the request came to" (the served host and port
    followed by the realm path), which is what a test on a free port wants.
    """

    clients: tuple[ClientConfig, ...] = DEFAULT_CLIENTS
    issuer: str | None = None
    access_token_ttl: int = 120  # seconds; PSC's access tokens live about two minutes
    id_token_ttl: int = 300
    code_ttl: int = 60  # authorization codes: single use, and short-lived
    key_grace: int = 600  # a rotated-out key stays in the JWKS this long (seconds)

    def __post_init__(self) -> None:
        ids = [client.client_id for client in self.clients]
        if len(ids) != len(set(ids)):
            raise ConfigError("two clients share a client_id")
        if self.issuer is not None and not self.issuer.startswith(("http://", "https://")):
            raise ConfigError("the issuer must be an http(s) URL")
        for name in ("access_token_ttl", "id_token_ttl", "code_ttl", "key_grace"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive")


def load_clients(path: Path) -> tuple[ClientConfig, ...]:
    """The clients of a JSON (``.json``) or TOML (anything else) file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data: Any = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path} is not valid {path.suffix or 'TOML'}: {exc}") from None
    entries = data.get("clients") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ConfigError(f"{path} must hold a list of clients under 'clients'")
    return tuple(ClientConfig.from_dict(entry) for entry in entries)
