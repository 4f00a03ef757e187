"""``fhir_server.loader`` and ``fhir-server load``: each file whole or not at all, existing
resources updated (update-as-create), progress counted in resources, and a clear non-zero
exit when there is nothing to load."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from fhir_server.app import make_context
from fhir_server.cli import app as cli_app
from fhir_server.interactions.context import Context
from fhir_server.loader import count_resources, load_file
from fhir_server.settings import Settings
from fhir_server.storage.port import Store
from fhir_server.storage.sqlite import SqliteStore

RPPS = "urn:oid:1.2.250.1.71.4.2.1"


def practitioner(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Practitioner",
        "id": f"p{n}",
        "identifier": [{"system": RPPS, "value": f"8100000{n:05d}"}],
        **extra,
    }


def organization(n: int, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Organization", "id": f"o{n}", "name": f"Cabinet {n}", **extra}


def ndjson(path: Path, *resources: dict[str, Any]) -> Path:
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in resources) + b"\n")
    return path


def context(store: Store) -> Context:
    return make_context(Settings(validate_profiles=False), store)


async def test_a_file_loads_whole_or_not_at_all(store: Store, tmp_path: Path) -> None:
    ctx = context(store)
    bad = {"resourceType": "Slot", "start": 12}  # a number where an instant is due
    half = ndjson(tmp_path / "half.ndjson", practitioner(1), practitioner(2), bad)
    report = await load_file(ctx, half)
    assert report.error and report.resources == 2  # written, then rolled back
    assert await store.read("Practitioner", "p1") is None
    good = ndjson(tmp_path / "good.ndjson", practitioner(1), practitioner(2))
    assert (await load_file(ctx, good)).error is None
    assert await store.read("Practitioner", "p2") is not None


async def test_resources_already_stored_are_updated(store: Store, tmp_path: Path) -> None:
    """Update-as-create through the current versions read in bulk (more than one batch): a
    second load makes version 2; a resource twice in one file is created, then updated."""
    ctx = context(store)
    first = ndjson(tmp_path / "first.ndjson", *(organization(n) for n in range(1200)))
    assert (await load_file(ctx, first)).error is None
    again = ndjson(
        tmp_path / "again.ndjson",
        organization(7, active=True),
        practitioner(1),
        practitioner(1, active=False),
        organization(1199, active=False),
    )
    report = await load_file(ctx, again)
    assert report.error is None and report.resources == 4
    for res_type, res_id, active in (
        ("Organization", "o7", True),
        ("Practitioner", "p1", False),
        ("Organization", "o1199", False),
    ):
        stored = await store.read(res_type, res_id)
        assert stored is not None and stored.version == 2
        assert orjson.loads(stored.content)["active"] is active
    o8 = await store.read("Organization", "o8")
    assert o8 is not None and o8.version == 1


async def test_progress_counts_resources(store: Store, tmp_path: Path) -> None:
    ctx = context(store)
    collection = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": practitioner(n)} for n in range(30)],
    }
    transaction = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": practitioner(n), "request": {"method": "PUT", "url": f"Practitioner/p{n}"}}
            for n in range(100, 105)
        ],
    }
    path = tmp_path / "data.ndjson"
    path.write_bytes(orjson.dumps(collection) + b"\n" + orjson.dumps(transaction) + b"\n")
    steps: list[int] = []
    report = await load_file(ctx, path, progress=steps.append)
    assert report.error is None and report.resources == 35
    assert steps == [1] * 30 + [5]
    assert count_resources(path) == 35
    broken = tmp_path / "broken.json"
    broken.write_text('{"resourceType": ')
    assert count_resources(broken) == 0


def test_the_load_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/fhir.sqlite"
    monkeypatch.setenv("FHIR_DATABASE_URL", url)
    monkeypatch.setenv("FHIR_PACKAGE_PATH", str(tmp_path / "no-packages"))
    runner = CliRunner()
    data = tmp_path / "data"
    data.mkdir()
    empty = runner.invoke(cli_app, ["load", "--allow-missing-packages", str(data)])
    assert empty.exit_code == 2
    assert "nothing to load" in empty.output and "no FHIR file" in empty.output
    ndjson(data / "none.ndjson")
    nothing = runner.invoke(cli_app, ["load", "--allow-missing-packages", str(data)])
    assert nothing.exit_code == 1 and "nothing loaded" in nothing.output
    collection = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": practitioner(n)} for n in range(40)],
    }
    (data / "one.json").write_bytes(orjson.dumps(collection))
    loaded = runner.invoke(cli_app, ["load", "--allow-missing-packages", str(data)])
    assert loaded.exit_code == 0, loaded.output
    assert "40/40" in loaded.output  # resources, not files (1/1)

    async def stored() -> tuple[int, bool]:
        store = SqliteStore(url)
        try:
            found = await store.read("Practitioner", "p39")
            async with store.reading() as session:
                from sqlalchemy import text

                analyzed = await session.fetch(text("SELECT count(*) FROM sqlite_stat1"))
            return (found.version if found else 0), analyzed[0][0] > 0
        finally:
            await store.close()

    assert asyncio.run(stored()) == (1, True)  # and statistics were taken after the load
