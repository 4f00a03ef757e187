"""The ``postgres`` marker is applied to every test that uses PostgreSQL (tests/conftest.py):
``pytest -m "not postgres"`` runs SQLite only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def collected(marker: str) -> list[str]:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
            "-m",
            marker,
            "tests/api/test_references.py",
            "tests/e2e/test_serve.py",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return [line for line in result.stdout.splitlines() if "::" in line]


def test_not_postgres_selects_sqlite_only() -> None:
    ids = collected("not postgres")
    assert ids and not [i for i in ids if "postgresql" in i or "pg_url" in i]
    assert "tests/api/test_references.py::test_setting_from_the_environment" in ids
    assert any(i.endswith("[sqlite]") for i in ids)


def test_postgres_selects_the_database_url_params_and_pg_url_users() -> None:
    ids = collected("postgres")
    assert ids and all("[postgresql" in i or "workers" in i for i in ids), ids
    assert "tests/e2e/test_serve.py::test_several_workers_share_the_port_and_come_back" in ids
    assert "tests/api/test_references.py::test_a_resource_may_reference_itself[postgresql]" in ids
