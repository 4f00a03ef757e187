"""Authentication is on unless FHIR_AUTH=none says otherwise, and ``serve`` refuses the two
configurations that cannot be right: no authentication off loopback, and authentication on
with no way for any client to authenticate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fhir_server.cli import app
from fhir_server.settings import Settings


def test_authentication_is_on_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FHIR_AUTH", raising=False)
    assert Settings().auth == "on"
    monkeypatch.setenv("FHIR_AUTH", "none")
    assert Settings().auth == "none"


def test_an_unknown_auth_mode_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FHIR_AUTH", "off")
    with pytest.raises(ValueError, match="auth"):
        Settings()


def serve(tmp_path: Path, *args: str, **env: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        app,
        ["serve", *args],
        env={
            "FHIR_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/never.sqlite",
            # an empty package cache: a configuration that passes the authentication check
            # stops at the next one (packages), never starts serving
            "FHIR_PACKAGE_PATH": str(tmp_path / "no-packages"),
            "FHIR_VALIDATE_PROFILES": "true",
            "COLUMNS": "200",
            **env,
        },
    )
    return result.exit_code, " ".join(result.output.split())


def test_serve_refuses_no_authentication_off_loopback(tmp_path: Path) -> None:
    code, out = serve(tmp_path, "--host", "0.0.0.0", FHIR_AUTH="none")
    assert code == 2
    assert "refusing to listen on 0.0.0.0 with FHIR_AUTH=none" in out
    assert not (tmp_path / "never.sqlite").exists()  # refused before anything was touched


def test_serve_refuses_authentication_nobody_can_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FHIR_AUTH", raising=False)
    code, out = serve(tmp_path)
    assert code == 2
    assert "FHIR_AUTH=on (the default) but no client can authenticate" in out
    assert "FHIR_CLIENT_CERTIFICATES" in out and "FHIR_PSC_ISSUER" in out
    assert not (tmp_path / "never.sqlite").exists()


@pytest.mark.parametrize(
    "credentials",
    [
        {"FHIR_PSC_ISSUER": "https://auth.bas.psc.esante.gouv.fr/auth/realms/esante-wallet"},
        {
            "FHIR_CLIENT_CERTIFICATES": json.dumps(
                [{"cn": "plateforme-sas", "ou": "SAS", "client_id": "sas", "role": "platform"}]
            )
        },
    ],
    ids=["tokens", "certificates"],
)
def test_serve_goes_past_the_check_with_a_way_in(
    tmp_path: Path, credentials: dict[str, str]
) -> None:
    code, out = serve(tmp_path, FHIR_AUTH="on", **credentials)
    assert "no client can authenticate" not in out
    assert code == 1 and "is not installed" in out  # the next check stopped it
