"""``fhir_server.package_cache`` and ``fhir-server packages list|check|install``; the start-up
error of ``fhir-server serve`` without a required package.

Packages here are tiny ones written by the tests (a package.json and one resource); the
registry is a real HTTP server on 127.0.0.1 serving tarballs built in the test.
"""

from __future__ import annotations

import gzip
import http.server
import io
import json
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fhir_server.cli import app
from fhir_server.package_cache import (
    R4_CORE,
    DirectorySource,
    InstallError,
    PackageSpec,
    QuietListener,
    Ref,
    RegistrySource,
    Source,
    TarballSource,
    Wanted,
    closure,
    install,
    is_installed,
    manifest_roots,
    missing_required,
)
from tests.conftest import REFERENCE

REFERENCE_PACKAGES = REFERENCE / "fhir-packages"


# -- tiny packages --------------------------------------------------------------------------


def package_json(name: str, version: str, deps: dict[str, str] | None = None) -> bytes:
    manifest = {"name": name, "version": version, "fhirVersions": ["4.0.1"]}
    if deps:
        manifest["dependencies"] = deps  # type: ignore[assignment]
    return json.dumps(manifest).encode()


def value_set(name: str) -> bytes:
    return json.dumps(
        {"resourceType": "ValueSet", "id": name, "url": f"http://example.org/ValueSet/{name}"}
    ).encode()


def write_package(
    folder: Path, name: str, version: str, deps: dict[str, str] | None = None
) -> Path:
    """``folder/package/...``: one package (``folder`` may be ``cache/name#version``)."""
    (folder / "package").mkdir(parents=True)
    (folder / "package" / "package.json").write_bytes(package_json(name, version, deps))
    (folder / "package" / f"ValueSet-{name}.json").write_bytes(value_set(name))
    return folder


def tarball_bytes(members: list[tarfile.TarInfo | tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                tar.addfile(member)
            else:
                info = tarfile.TarInfo(member[0])
                info.size = len(member[1])
                tar.addfile(info, io.BytesIO(member[1]))
    return buffer.getvalue()


def package_tgz(name: str, version: str, deps: dict[str, str] | None = None) -> bytes:
    """As the registry serves it: members under package/, plus a sibling folder."""
    return tarball_bytes(
        [
            ("package/package.json", package_json(name, version, deps)),
            (f"package/ValueSet-{name}.json", value_set(name)),
            ("other/readme.txt", b"not part of package/"),
        ]
    )


def cache_entries(cache: Path) -> list[str]:
    """Everything at the top of the cache, hidden temporary folders included."""
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


def run(
    cache: Path, names: list[str], *sources: Source, deps: bool = True
) -> tuple[list[str], list[str], list[str]]:
    roots = [Wanted(Ref.parse(n), True, "asked for") for n in names]
    report = install(cache, roots, sources, with_dependencies=deps)
    return (
        [w.key for w in report.installed],
        [w.key for w in report.present],
        [f.message() for f in report.failed],
    )


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


# -- local sources --------------------------------------------------------------------------


def test_install_from_a_cache_folder_with_dependencies(tmp_path: Path, cache: Path) -> None:
    source = tmp_path / "other-cache"
    write_package(source / "ex.top#1.0.0", "ex.top", "1.0.0", {"ex.dep": "2.0.0"})
    write_package(source / "ex.dep#2.0.0", "ex.dep", "2.0.0")
    write_package(source / "ex.unrelated#1.0.0", "ex.unrelated", "1.0.0")
    installed, present, failed = run(cache, ["ex.top#1.0.0"], DirectorySource(source))
    assert (installed, present, failed) == (["ex.top#1.0.0", "ex.dep#2.0.0"], [], [])
    assert cache_entries(cache) == ["ex.dep#2.0.0", "ex.top#1.0.0"]  # nothing else, no temp
    assert (cache / "ex.dep#2.0.0" / "package" / "ValueSet-ex.dep.json").read_bytes() == (
        value_set("ex.dep")
    )


def test_without_dependencies(tmp_path: Path, cache: Path) -> None:
    source = tmp_path / "other-cache"
    write_package(source / "ex.top#1.0.0", "ex.top", "1.0.0", {"ex.dep": "2.0.0"})
    assert run(cache, ["ex.top#1.0.0"], DirectorySource(source), deps=False)[0] == ["ex.top#1.0.0"]
    assert cache_entries(cache) == ["ex.top#1.0.0"]


@pytest.mark.parametrize("point_at", ["root", "package folder"])
def test_install_from_a_single_package_folder(tmp_path: Path, cache: Path, point_at: str) -> None:
    folder = write_package(tmp_path / "unpacked", "ex.one", "0.1.0")
    source = folder if point_at == "root" else folder / "package"
    installed, _present, failed = run(cache, ["ex.one#0.1.0"], DirectorySource(source))
    assert (installed, failed) == (["ex.one#0.1.0"], [])
    assert (cache / "ex.one#0.1.0" / "package" / "package.json").is_file()
    assert cache_entries(cache) == ["ex.one#0.1.0"]


def test_install_from_a_tarball(tmp_path: Path, cache: Path) -> None:
    tgz = tmp_path / "ex.one-0.1.0.tgz"
    tgz.write_bytes(package_tgz("ex.one", "0.1.0"))
    assert run(cache, ["ex.one#0.1.0"], TarballSource(tgz)) == (["ex.one#0.1.0"], [], [])
    installed = cache / "ex.one#0.1.0"
    assert (installed / "package" / "ValueSet-ex.one.json").read_bytes() == value_set("ex.one")
    assert (installed / "other" / "readme.txt").is_file()  # siblings of package/ are kept
    assert cache_entries(cache) == ["ex.one#0.1.0"]


def test_dependencies_come_from_the_next_source(tmp_path: Path, cache: Path) -> None:
    tgz = tmp_path / "top.tgz"
    tgz.write_bytes(package_tgz("ex.top", "1.0.0", {"ex.dep": "2.0.0", "ex.gone": "9.9.9"}))
    folder = write_package(tmp_path / "dep", "ex.dep", "2.0.0")
    roots = [Wanted(Ref("ex.top", "1.0.0"), True, "asked for")]
    report = install(cache, roots, [TarballSource(tgz), DirectorySource(folder)])
    assert [w.key for w in report.installed] == ["ex.top#1.0.0", "ex.dep#2.0.0"]
    (gone,) = report.failed
    assert gone.not_found and not gone.fatal  # an optional dependency nobody holds: a warning
    assert gone.message().startswith("ex.gone#9.9.9 (dependency of ex.top#1.0.0): not found (")
    assert "top.tgz holds ex.top#1.0.0" in gone.message()


class Refuse:
    label = "refuse"

    def fetch(self, ref: Ref, into: Path, scratch: Path, listener: object) -> None:
        raise AssertionError(f"{ref.key} is installed: no source should be asked")


def test_already_installed_is_a_no_op(tmp_path: Path, cache: Path) -> None:
    write_package(cache / "ex.top#1.0.0", "ex.top", "1.0.0", {"ex.dep": "2.0.0"})
    write_package(cache / "ex.dep#2.0.0", "ex.dep", "2.0.0")
    before = (cache / "ex.top#1.0.0" / "package" / "package.json").stat().st_mtime_ns
    assert run(cache, ["ex.top#1.0.0"], Refuse()) == ([], ["ex.top#1.0.0", "ex.dep#2.0.0"], [])
    assert (cache / "ex.top#1.0.0" / "package" / "package.json").stat().st_mtime_ns == before


def test_missing_source_and_bad_names_are_errors(tmp_path: Path) -> None:
    with pytest.raises(InstallError, match="no such folder"):
        DirectorySource(tmp_path / "nope")
    with pytest.raises(InstallError, match="no such file"):
        TarballSource(tmp_path / "nope.tgz")
    for text in ("no-version", "../evil#1.0", "a/b#1.0", "ok#../1"):
        with pytest.raises(InstallError):
            Ref.parse(text)
    with pytest.raises(InstallError, match="http"):
        RegistrySource("ftp://example.org")


# -- bad tarballs: an error, and nothing left in the cache ------------------------------------


def _link(name: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, "/etc/passwd"
    return info


GOOD = ("package/package.json", package_json("ex.bad", "1.0.0"))
BAD_TARBALLS = {
    "parent traversal": (tarball_bytes([GOOD, ("package/../../evil.txt", b"x")]), "outside"),
    "absolute path": (tarball_bytes([GOOD, ("/tmp/evil-fhir-package.txt", b"x")]), "absolute"),
    "symbolic link": (tarball_bytes([GOOD, _link("package/x.json", tarfile.SYMTYPE)]), "link"),
    "hard link": (tarball_bytes([GOOD, _link("package/y.json", tarfile.LNKTYPE)]), "link"),
    "corrupt gzip": (b"\x1f\x8b\x08\x00" + b"garbage" * 50, "not a valid package tarball"),
    "truncated": (package_tgz("ex.bad", "1.0.0")[:-40], "not a valid package tarball"),
    "not a package": (tarball_bytes([("README", b"hello")]), "no package/package.json"),
}


@pytest.mark.parametrize("case", BAD_TARBALLS)
def test_bad_tarball_is_refused_and_leaves_nothing(tmp_path: Path, cache: Path, case: str) -> None:
    data, expected = BAD_TARBALLS[case]
    tgz = tmp_path / "bad.tgz"
    tgz.write_bytes(data)
    installed, _present, failed = run(cache, ["ex.bad#1.0.0"], TarballSource(tgz))
    assert installed == []
    assert len(failed) == 1 and expected in failed[0], failed
    assert cache_entries(cache) == []
    assert not (tmp_path / "evil.txt").exists() and not (cache.parent / "evil.txt").exists()


def test_wrong_name_or_version_is_refused(tmp_path: Path, cache: Path) -> None:
    tgz = tmp_path / "two.tgz"
    tgz.write_bytes(package_tgz("ex.one", "2.0.0"))
    (message,) = run(cache, ["ex.one#1.0.0"], TarballSource(tgz))[2]
    assert message == f"ex.one#1.0.0: not found ({tgz} holds ex.one#2.0.0)"
    # A cache folder whose package.json says otherwise than its name.
    source = tmp_path / "liar"
    write_package(source / "ex.one#1.0.0", "ex.one", "1.0.1")
    (message,) = run(cache, ["ex.one#1.0.0"], DirectorySource(source))[2]
    assert message == f"ex.one#1.0.0: {source} holds ex.one#1.0.1, not ex.one#1.0.0"
    assert cache_entries(cache) == []


# -- registry -------------------------------------------------------------------------------


class Registry:
    """A FHIR package registry on 127.0.0.1: GET /{name}/{version} answers a tarball."""

    def __init__(self) -> None:
        self.tarballs: dict[str, bytes] = {}
        self.statuses: dict[str, int] = {}
        self.requests: list[str] = []
        registry = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                registry.requests.append(self.path)
                body = registry.tarballs.get(self.path)
                status = registry.statuses.get(self.path, 200 if body is not None else 404)
                body = body if status == 200 and body is not None else b'{"error":"not found"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/tar+gzip")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    reg = Registry()
    reg.thread.start()
    try:
        yield reg
    finally:
        reg.server.shutdown()
        reg.server.server_close()


def test_install_from_the_registry(registry: Registry, cache: Path) -> None:
    registry.tarballs["/ex.top/1.0.0"] = package_tgz("ex.top", "1.0.0", {"ex.dep": "2.0.0"})
    registry.tarballs["/ex.dep/2.0.0"] = package_tgz("ex.dep", "2.0.0")
    received: list[tuple[str, int, int | None]] = []

    class Listen(QuietListener):
        def received(self, ref: Ref, done: int, total: int | None) -> None:
            received.append((ref.key, done, total))

    roots = [Wanted(Ref("ex.top", "1.0.0"), True, "asked for")]
    report = install(cache, roots, [RegistrySource(registry.url + "/")], listener=Listen())
    assert [w.key for w in report.installed] == ["ex.top#1.0.0", "ex.dep#2.0.0"]
    assert registry.requests == ["/ex.top/1.0.0", "/ex.dep/2.0.0"]
    size = len(registry.tarballs["/ex.top/1.0.0"])
    assert ("ex.top#1.0.0", size, size) in received
    assert cache_entries(cache) == ["ex.dep#2.0.0", "ex.top#1.0.0"]


def test_registry_404_500_wrong_package_and_unreachable(registry: Registry, cache: Path) -> None:
    source = RegistrySource(registry.url)
    (message,) = run(cache, ["ex.absent#1.0.0"], source)[2]
    assert message == f"ex.absent#1.0.0: not found (not in the registry {registry.url} (HTTP 404))"
    registry.statuses["/ex.broken/1.0.0"] = 500
    (message,) = run(cache, ["ex.broken#1.0.0"], source)[2]
    assert "HTTP 500" in message
    registry.tarballs["/ex.top/1.0.0"] = package_tgz("ex.other", "1.0.0")
    (message,) = run(cache, ["ex.top#1.0.0"], source)[2]
    assert message.endswith("holds ex.other#1.0.0, not ex.top#1.0.0")
    assert cache_entries(cache) == []

    registry.server.shutdown()
    registry.server.server_close()
    closed = RegistrySource(registry.url)
    messages = run(cache, ["ex.a#1.0.0", "ex.b#1.0.0"], closed)[2]
    assert all(f"cannot reach the FHIR package registry {registry.url}" in m for m in messages)
    assert len(messages) == 2 and cache_entries(cache) == []


# -- what the server wants ------------------------------------------------------------------


def test_manifest_roots_closure_and_required(tmp_path: Path, cache: Path) -> None:
    specs = [PackageSpec("ex.top", "1.0.0"), PackageSpec("ex.extra", "3.0.0", required=False)]
    roots = manifest_roots(specs)
    assert [(w.key, w.required) for w in roots] == [
        ("ex.top#1.0.0", True),
        ("ex.extra#3.0.0", False),
        (R4_CORE.key, True),
    ]
    assert [w.key for w in missing_required(cache, specs)] == ["ex.top#1.0.0", R4_CORE.key]
    write_package(cache / "ex.top#1.0.0", "ex.top", "1.0.0", {"ex.dep": "2.0.0"})
    write_package(cache / R4_CORE.key, R4_CORE.name, R4_CORE.version)
    assert missing_required(cache, specs) == []
    wanted = closure(cache, roots)
    assert [(w.key, w.reason) for w in wanted][-1] == ("ex.dep#2.0.0", "dependency of ex.top#1.0.0")
    assert not is_installed(cache, Ref("ex.dep", "2.0.0"))


# -- the command line -----------------------------------------------------------------------


@pytest.fixture
def cli_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cli-cache"
    monkeypatch.setenv("FHIR_PACKAGE_PATH", str(cache))
    monkeypatch.setenv("FHIR_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/fhir.sqlite")
    monkeypatch.delenv("FHIR_VALIDATE_PROFILES", raising=False)
    return cache


SAS = "ans.fhir.fr.sas#1.1.0"


def test_serve_refuses_to_start_without_a_required_package(cli_cache: Path) -> None:
    result = CliRunner().invoke(app, ["serve", "--port", "1"])
    assert result.exit_code == 1
    assert f"FHIR package {SAS} is not installed in {cli_cache}" in result.stderr
    assert f"FHIR package {R4_CORE.key} is not installed" in result.stderr
    assert f"fhir-server packages install {SAS} {R4_CORE.key}" in result.stderr
    assert "FHIR_VALIDATE_PROFILES=false" in result.stderr
    check = CliRunner().invoke(app, ["packages", "check"])
    assert check.exit_code == 1 and f"fhir-server packages install {SAS}" in check.stderr


@pytest.mark.parametrize("command", [["load", "data.json"], ["reindex"]])
def test_load_and_reindex_refuse_without_the_search_parameter_packages(
    tmp_path: Path, cli_cache: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    """Outside scripts/run (no FHIR_PACKAGE_PATH), indexing without the SAS package would
    silently lack its search parameters: refused, with the command that fixes it, profile
    validation or not; nothing is written."""
    monkeypatch.setenv("FHIR_VALIDATE_PROFILES", "false")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data.json").write_text('{"resourceType": "Practitioner", "id": "p1"}')
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 1, result.output
    assert f"FHIR package {SAS} is not installed in {cli_cache}" in result.stderr
    assert "the search index needs its search parameters" in result.stderr
    assert f"fhir-server packages install {SAS} " in result.stderr
    assert R4_CORE.key not in result.stderr  # only what indexing needs
    assert "--allow-missing-packages" in result.stderr
    assert not (tmp_path / "fhir.sqlite").exists()


def test_load_goes_on_when_told_and_once_the_package_is_installed(
    tmp_path: Path, cli_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FHIR_VALIDATE_PROFILES", "false")
    data = tmp_path / "data.json"
    data.write_text('{"resourceType": "Practitioner", "id": "p1"}')
    told = CliRunner().invoke(app, ["load", str(data), "--allow-missing-packages"])
    assert told.exit_code == 0, told.output
    assert f"warning: indexing without the search parameters of {SAS}" in told.stderr
    name, version = SAS.split("#")
    write_package(cli_cache / SAS, name, version)
    installed = CliRunner().invoke(app, ["load", str(data)])
    assert installed.exit_code == 0, installed.output
    assert "warning" not in installed.stderr


def test_check_passes_without_profile_validation(
    cli_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FHIR_VALIDATE_PROFILES", "false")
    assert CliRunner().invoke(app, ["packages", "check"]).exit_code == 0


def test_cli_install_from_a_tarball_then_list(tmp_path: Path, cli_cache: Path) -> None:
    tgz = tmp_path / "ex.one.tgz"
    tgz.write_bytes(package_tgz("ex.one", "0.1.0"))
    result = CliRunner().invoke(app, ["packages", "install", "ex.one#0.1.0", "--from", str(tgz)])
    assert result.exit_code == 0, result.output
    assert "installed ex.one#0.1.0" in result.stderr
    again = CliRunner().invoke(app, ["packages", "install", "ex.one#0.1.0", "--from", str(tgz)])
    assert again.exit_code == 0 and "nothing to install" in again.stderr
    listed = CliRunner().invoke(app, ["packages", "list"])
    assert listed.exit_code == 0
    assert "missing" in listed.stdout and "ans.fhir.fr.sas" in listed.stdout


def test_cli_errors_are_one_line_and_exit_1(tmp_path: Path, cli_cache: Path) -> None:
    bad = tmp_path / "bad.tgz"
    bad.write_bytes(gzip.compress(b"not a tar"))
    result = CliRunner().invoke(app, ["packages", "install", "ex.bad#1.0.0", "--from", str(bad)])
    assert result.exit_code == 1
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith(f"error: ex.bad#1.0.0: {bad}: not a valid package tarball")
    for args in (["nope"], ["ex.x#1", "--from", str(tmp_path / "absent")]):
        result = CliRunner().invoke(app, ["packages", "install", *args])
        assert result.exit_code == 1 and result.stderr.startswith("error: "), result.output
    assert cache_entries(cli_cache) == []


def test_cli_install_from_the_registry_and_404(registry: Registry, cli_cache: Path) -> None:
    registry.tarballs["/ex.one/0.1.0"] = package_tgz("ex.one", "0.1.0")
    ok = CliRunner().invoke(
        app, ["packages", "install", "ex.one#0.1.0", "--registry", registry.url]
    )
    assert ok.exit_code == 0, ok.output
    assert is_installed(cli_cache, Ref("ex.one", "0.1.0"))
    missing = CliRunner().invoke(
        app, ["packages", "install", "ex.two#0.1.0", "--registry", registry.url]
    )
    assert missing.exit_code == 1
    assert f"error: ex.two#0.1.0: not found (not in the registry {registry.url} (HTTP 404))" in (
        missing.stderr
    )


@pytest.mark.skipif(
    not (REFERENCE_PACKAGES / SAS).is_dir(), reason="../shared/reference not beside the repo"
)
def test_cli_install_declared_packages_from_the_reference_cache(cli_cache: Path) -> None:
    """The offline path of docs/deployment.md: the manifest's packages from a cache folder;
    SAS dependencies that folder does not hold are warnings, not errors."""
    result = CliRunner().invoke(app, ["packages", "install", "--from", str(REFERENCE_PACKAGES)])
    assert result.exit_code == 0, result.output
    assert cache_entries(cli_cache) == [SAS, R4_CORE.key]
    assert f"warning: hl7.fhir.fr.core#1.1.0 (dependency of {SAS}): not found" in result.stderr
    assert CliRunner().invoke(app, ["packages", "check"]).exit_code == 0
