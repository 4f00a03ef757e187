"""``fhir-server pull --once [--source NAME]``: polls now, prints the report table, exit 1
when a source failed, 2 without a usable sources file or for an unknown source."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from fhir_server.cli import app
from tests.ingest.conftest import REFERENCE
from tests.ingest.pull.feeds import Route, feed_server
from tests.ingest.pull.test_scheduler import feed
from tests.ingest.simple_format import NAME


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FHIR_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/fhir.sqlite")
    monkeypatch.setenv("FHIR_PACKAGE_PATH", str(REFERENCE / "fhir-packages"))
    monkeypatch.setenv("FHIR_TERMINOLOGY_PATHS", orjson.dumps([str(REFERENCE / "nos")]).decode())
    path = tmp_path / "sources.json"
    monkeypatch.setenv("FHIR_PULL_SOURCES", str(path))
    return path


def test_pull_once(env: Path) -> None:
    runner = CliRunner()
    with feed_server() as server:
        server.routes["/good.json"] = Route(feed(2), etag='"e"')
        server.routes["/bad.json"] = Route(b"", status=502)
        sources = [
            {"name": "good", "url": server.url("/good.json"), "format": NAME, "timeout": 5},
            {"name": "bad", "url": server.url("/bad.json"), "format": NAME, "timeout": 5},
        ]
        env.write_bytes(orjson.dumps({"sources": sources}))
        first = runner.invoke(app, ["pull", "--once"])
        assert first.exit_code == 1, first.output
        assert "pull report" in first.output and "ingested" in first.output
        assert "bad: " in first.output and "HTTP 502" in first.output
        only = runner.invoke(app, ["pull", "--once", "--source", "good"])
        assert only.exit_code == 0, only.output
        assert "not-modified" in only.output and "bad" not in only.output
        assert server.count("/good.json") == 2 and server.count("/bad.json") == 1
        unknown = runner.invoke(app, ["pull", "--once", "--source", "nope"])
        assert unknown.exit_code == 2 and "no source named 'nope'" in unknown.output


def test_pull_needs_a_sources_file(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FHIR_PULL_SOURCES")
    result = CliRunner().invoke(app, ["pull", "--once"])
    assert result.exit_code == 2 and "FHIR_PULL_SOURCES is not set" in result.output


def test_pull_once_over_mtls_with_paths_relative_to_the_file(env: Path, tmp_path: Path) -> None:
    import ssl

    from tests.e2e.tls_support import make_certs

    certs = make_certs(tmp_path / "certs")
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=certs.ca)
    tls.load_cert_chain(certs.server.cert, certs.server.key)
    tls.verify_mode = ssl.CERT_REQUIRED
    with feed_server(tls) as server:
        server.routes["/a.json"] = Route(feed(2))
        entry = {
            "name": "vendor",
            "url": server.url("/a.json"),
            "format": NAME,
            "tls": {"cert": "certs/valid.pem", "key": "certs/valid.key", "ca": "certs/ca.pem"},
        }
        env.write_bytes(orjson.dumps({"sources": [entry]}))
        result = CliRunner().invoke(app, ["pull", "--once"])
        assert result.exit_code == 0, result.output
        assert "ingested" in result.output and server.count("/a.json") == 1
