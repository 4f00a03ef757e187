"""``fhir-server ingest``: files and URLs (a real HTTP server on loopback), the RPPS table,
the report table, the size cap, exit codes."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from fhir_server.cli import app as cli_app
from fhir_server.storage.sqlite import SqliteStore
from mappings import sas
from tests.ingest.conftest import REFERENCE
from tests.ingest.simple_format import NAME, feed_json, person, slots

FEEDS: dict[str, bytes] = {}


class _Feeds(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = FEEDS.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def feed_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Feeds)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path}/fhir.sqlite"
    monkeypatch.setenv("FHIR_DATABASE_URL", url)
    monkeypatch.setenv("FHIR_PACKAGE_PATH", str(REFERENCE / "fhir-packages"))
    monkeypatch.setenv("FHIR_TERMINOLOGY_PATHS", orjson.dumps([str(REFERENCE / "nos")]).decode())
    monkeypatch.setenv("FHIR_INGEST_MAX_BYTES", "20000")
    return url


def count_slots(url: str) -> int:
    async def count() -> int:
        store = SqliteStore(url)
        try:
            return sum(
                [
                    await store.read("Slot", sas.stable_id("simple", "slot", f"a-2026-06-12-{n}"))
                    is not None
                    for n in range(3)
                ]
            )
        finally:
            await store.close()

    return asyncio.run(count())


def test_the_ingest_command(env: str, tmp_path: Path, feed_server: str) -> None:
    runner = CliRunner()
    feed = tmp_path / "feed.json"
    # "b" carries no RPPS: the table gives it one; "c" has none anywhere: reported, rejected
    doc = feed_json(
        [
            person("a", "10000000015", slots("2026-06-12", 2)),
            person("b", None, slots("2026-06-13", 1)),
            person("c", None, []),
        ]
    )
    feed.write_bytes(orjson.dumps(doc))
    table = tmp_path / "rpps.csv"
    table.write_text("key;rpps\nb;10000000023\n")
    args = ["ingest", "--format", NAME, "--rpps-table", str(table), "--booking-url",
            "https://rdv.example.org/book"]  # fmt: skip
    first = runner.invoke(cli_app, [*args, str(feed)])
    assert first.exit_code == 1, first.output  # "c" was rejected
    assert "ingest report" in first.output and "not-found" in first.output
    assert "feed.json#/practitioners/2" in first.output  # where "c" was found
    assert count_slots(env) == 2
    FEEDS["/agenda.json"] = orjson.dumps(
        feed_json([person("a", "10000000015", slots("2026-06-12", 3))])
    )
    FEEDS["/huge.json"] = b" " * 30000
    fetched = runner.invoke(cli_app, [*args, f"{feed_server}/agenda.json"])
    assert fetched.exit_code == 0, fetched.output
    assert count_slots(env) == 3
    refused = runner.invoke(
        cli_app, [*args, f"{feed_server}/huge.json", f"{feed_server}/missing.json"]
    )
    assert refused.exit_code == 1
    assert "more than" in refused.output and "HTTP 404" in refused.output


def test_unknown_format_and_bad_table(env: str, tmp_path: Path) -> None:
    runner = CliRunner()
    unknown = runner.invoke(cli_app, ["ingest", "--format", "nope", str(tmp_path / "x.json")])
    assert unknown.exit_code == 2 and "unknown format" in unknown.output
    table = tmp_path / "rpps.json"
    table.write_text('{"b": "123"}')
    bad = runner.invoke(cli_app, ["ingest", "--format", NAME, "--rpps-table", str(table), "x.json"])
    assert bad.exit_code == 2 and "not 11 digits" in bad.output
