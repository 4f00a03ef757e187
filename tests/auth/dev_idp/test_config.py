"""Clients from JSON or TOML files, and the mistakes a clients file can make."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from auth.dev_idp.config import ClientConfig, ConfigError, DevIdpConfig, load_clients

TOML = """
[[clients]]
client_id = "agenda-vendor"
client_secret = "s3cret"
grant_types = ["client_credentials"]
scopes = ["system/Slot.read", "system/Slot.write"]

[[clients]]
client_id = "web"
token_endpoint_auth_method = "client_secret_post"
client_secret = "w"
redirect_uris = ["http://127.0.0.1:9000/cb"]
post_logout_redirect_uris = ["http://127.0.0.1:9000/"]
"""


def test_clients_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "clients.toml"
    path.write_text(TOML)
    vendor, web = load_clients(path)
    assert vendor.client_id == "agenda-vendor"
    assert vendor.grant_types == ("client_credentials",)
    assert vendor.scopes == ("system/Slot.read", "system/Slot.write")
    assert web.token_endpoint_auth_method == "client_secret_post"
    assert web.redirect_uris == ("http://127.0.0.1:9000/cb",)
    assert web.scopes == ("openid", "scope_all")  # the default


def test_clients_from_json_with_a_public_key(tmp_path: Path) -> None:
    jwks = {"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]}
    path = tmp_path / "clients.json"
    path.write_text(
        json.dumps(
            {
                "clients": [
                    {
                        "client_id": "signed",
                        "token_endpoint_auth_method": "private_key_jwt",
                        "jwks": jwks,
                        "grant_types": ["client_credentials"],
                        "scopes": ["system/*.read"],
                    }
                ]
            }
        )
    )
    (client,) = load_clients(path)
    assert client.jwks == jwks


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"client_id": "a", "colour": "blue"}, "unknown client field"),
        ({"client_id": "a", "redirect_uris": "http://x/cb"}, "must be a list"),
        ({"client_id": "a", "redirect_uris": ["http://x/cb"]}, "needs client_secret"),
        (
            {
                "client_id": "a",
                "token_endpoint_auth_method": "private_key_jwt",
                "redirect_uris": ["u"],
            },
            "needs jwks",
        ),
        ({"client_id": "a", "client_secret": "s"}, "needs at least one redirect_uri"),
        ({"client_id": "a", "client_secret": "s", "grant_types": ["password"]}, "unsupported"),
        ({"client_id": "a", "token_endpoint_auth_method": "magic"}, "must be one of"),
        (
            {
                "client_id": "a",
                "token_endpoint_auth_method": "none",
                "grant_types": ["client_credentials"],
            },
            "public client",
        ),
    ],
)
def test_bad_clients_are_refused_with_a_reason(
    tmp_path: Path, entry: dict[str, object], message: str
) -> None:
    path = tmp_path / "clients.json"
    path.write_text(json.dumps({"clients": [entry]}))
    with pytest.raises(ConfigError, match=message):
        load_clients(path)


@pytest.mark.parametrize(
    "text", ["not json", '{"clients": {}}', '["a"]', '{"clients": ["a"]}'], ids=str
)
def test_malformed_files_are_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "clients.json"
    path.write_text(text)
    with pytest.raises(ConfigError):
        load_clients(path)


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_clients(tmp_path / "absent.toml")


def test_duplicate_client_ids_and_bad_settings_are_refused() -> None:
    client = ClientConfig(client_id="a", client_secret="s", grant_types=("client_credentials",))
    with pytest.raises(ConfigError, match="share a client_id"):
        DevIdpConfig(clients=(client, client))
    with pytest.raises(ConfigError, match="issuer"):
        DevIdpConfig(issuer="ftp://127.0.0.1/realm")
    with pytest.raises(ConfigError, match="access_token_ttl"):
        DevIdpConfig(access_token_ttl=0)
