"""The example client scripts run with what ``./scripts/run`` installs: every library they
import is the project's dependency or in its ``examples`` extra (they once needed the dev
extra). ``tests/e2e/test_serve.py`` runs them against a real server."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = sorted((ROOT / "examples" / "clients").glob("*.py"))


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower() for r in requirements}


def installed_by_run() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return _names(project["dependencies"]) | _names(project["optional-dependencies"]["examples"])


def third_party_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    modules = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
    }
    return {m for m in modules if m not in sys.stdlib_module_names and m != "__future__"}


def test_there_are_client_scripts() -> None:
    assert [p.name for p in CLIENTS] == ["fhirclient_client.py", "fhirpy_client.py"]


@pytest.mark.parametrize("script", CLIENTS, ids=lambda p: p.name)
def test_every_import_is_installed_by_scripts_run(script: Path) -> None:
    distributions = packages_distributions()
    wanted = installed_by_run()
    for module in third_party_imports(script):
        providers = {d.lower() for d in distributions.get(module, [])}
        found = providers or "not installed"
        assert providers & wanted, f"{script.name} imports {module} ({found})"
