"""The sources file: the example loads; every bad entry is refused with its source and
field named; relative paths are the file's; ``serve`` and ``pull`` refuse a bad file."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from fhir_server.cli import app
from fhir_server.ingest.pull.config import PullConfigError, load_sources
from tests.servers import ROOT

EXAMPLE = ROOT / "examples" / "pull-sources.json"


def write(tmp_path: Path, sources: Any, name: str = "sources.json") -> Path:
    path = tmp_path / name
    path.write_bytes(orjson.dumps({"sources": sources}))
    return path


def good(**extra: Any) -> dict[str, Any]:
    return {"name": "feed", "url": "https://feeds.example.org/a.json", "format": "doctolib"} | extra


def test_the_example_loads_with_its_files_beside_it(tmp_path: Path) -> None:
    shutil.copy(EXAMPLE, tmp_path / "sources.json")
    for name in ("certs/sas-client.pem", "certs/sas-client.key", "certs/agenda-ca.pem"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("-")
    (tmp_path / "rpps").mkdir()
    (tmp_path / "rpps" / "centre.csv").write_text("dr-martin,10000000015\n")
    sources = load_sources(tmp_path / "sources.json")
    assert [s.name for s in sources] == ["agenda-sas-api", "centre-ical", "pharmacy-feed"]
    sas, ical, pharmacy = sources
    assert sas.tls is not None and sas.tls.cert == tmp_path / "certs" / "sas-client.pem"
    assert ical.rpps_table == tmp_path / "rpps" / "centre.csv"
    assert not pharmacy.enabled
    assert sas.poll_deadline > sas.lease_seconds(30) > sas.timeout


def test_toml_is_read_too(tmp_path: Path) -> None:
    path = tmp_path / "sources.toml"
    path.write_text(
        '[[sources]]\nname = "a"\nurl = "http://127.0.0.1:9/x.ics"\nformat = "ical"\n'
        "interval = 60\n"
    )
    (source,) = load_sources(path)
    assert source.format == "ical" and source.interval == 60


@pytest.mark.parametrize(
    ("entry", "said"),
    [
        (good(format="nope"), "source feed: format: unknown format"),
        (good(url="ftp://x/y"), "source feed: url: an http(s) URL"),
        (good(url="https://user:pw@x.org/y"), "no credentials in the URL"),
        (good(name="a b"), "source a b: name: letters, digits"),
        (good(interval=0), "source feed: interval"),
        (good(surprise=1), "source feed: surprise: Extra inputs"),
        (good(format="sas-fhir"), "a sas-fhir source needs `rpps`"),
        (good(format="sas-fhir", rpps=["123"]), "source feed: rpps: not 11 digits: 123"),
        (good(tls={"cert": "missing.pem", "key": "missing.key"}), "tls.cert"),
        (good(url="http://x.org/y", tls=None, rpps_table="nope.csv"), "rpps_table"),
        (good(retry=100, max_backoff=10), "max_backoff must be at least retry"),
        ({"url": "https://x.org/a"}, "source #2: name: Field required"),
    ],
)
def test_a_bad_entry_is_refused_with_its_place(tmp_path: Path, entry: Any, said: str) -> None:
    with pytest.raises(PullConfigError) as caught:
        load_sources(write(tmp_path, [good(name="other"), entry]))
    assert said in str(caught.value)
    assert "other" not in str(caught.value)  # the good entry is not blamed


def test_names_are_unique(tmp_path: Path) -> None:
    with pytest.raises(PullConfigError, match="source names used twice: feed"):
        load_sources(write(tmp_path, [good(), good()]))


def test_a_bad_rpps_table_is_refused(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("k,123\n")
    with pytest.raises(PullConfigError, match=r"source feed: .*not 11 digits"):
        load_sources(write(tmp_path, [good(rpps_table="t.csv")]))


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(PullConfigError, match="No such file"):
        load_sources(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(PullConfigError, match="not valid json"):
        load_sources(tmp_path / "bad.json")


def test_serve_and_pull_refuse_a_bad_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, [good(format="nope")])
    monkeypatch.setenv("FHIR_PULL_SOURCES", str(path))
    monkeypatch.setenv("FHIR_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/db.sqlite")
    monkeypatch.setenv("FHIR_VALIDATE_PROFILES", "false")
    runner = CliRunner()
    for args in (["serve"], ["pull", "--once"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert "FHIR_PULL_SOURCES" in result.output and "unknown format" in result.output
