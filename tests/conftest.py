"""Shared fixtures: a real store on SQLite and on PostgreSQL (pytest-postgresql).

Every test that takes ``store`` runs twice, once per engine. PostgreSQL is a real server
started once per session from Debian's binaries; each test gets a fresh database. The tests
that use it are marked ``postgres`` (``pytest -m "not postgres"`` runs SQLite only).
"""

from __future__ import annotations

import glob
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pytest_postgresql import factories

from fhir_server.storage.port import Store

HERE = Path(__file__).resolve().parent
REFERENCE = HERE.parent.parent / "shared" / "reference"


def find_pg_ctl() -> str | None:
    found = shutil.which("pg_ctl")
    if found:
        return found
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4])
    )
    return candidates[-1] if candidates else None


# Authentication is on by default (settings.py). The tests that are not about it build their
# apps and servers without credentials, so they run with FHIR_AUTH=none unless they say
# otherwise; the tests of authentication set FHIR_AUTH=on (or Settings(auth="on")) themselves,
# and tests/test_settings.py checks the real default.
os.environ.setdefault("FHIR_AUTH", "none")

PG_CTL = find_pg_ctl()
if PG_CTL:
    os.environ["FHIR_TEST_PG_CTL"] = PG_CTL

postgresql_proc = factories.postgresql_proc(
    executable=str(HERE / "support" / "pg_ctl_as_postgres"), host="127.0.0.1"
)
postgresql = factories.postgresql("postgresql_proc")


def _require_pg() -> None:
    if PG_CTL is None:
        message = "PostgreSQL binaries (pg_ctl) not found: install Debian's postgresql package"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> str:
    """URL of a fresh PostgreSQL database for this test."""
    _require_pg()
    conn: Any = request.getfixturevalue("postgresql")
    info = conn.info
    return f"postgresql+asyncpg://{info.user}@{info.host}:{info.port}/{info.dbname}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/fhir.sqlite"
    url: str = request.getfixturevalue("pg_url")
    return url


def open_store(url: str) -> Store:
    if url.startswith("sqlite"):
        from fhir_server.storage.sqlite import SqliteStore

        return SqliteStore(url)
    from fhir_server.storage.postgres import PostgresStore

    return PostgresStore(url, pool_size=5)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    s = open_store(database_url)
    await s.migrate()
    try:
        yield s
    finally:
        await s.close()


POSTGRES_FIXTURES = frozenset({"pg_url", "postgresql", "postgresql_proc"})


def uses_postgres(item: pytest.Item) -> bool:
    """A test that asks for a PostgreSQL fixture or runs on the ``database_url`` (hence
    ``store``) parameter "postgresql"."""
    if POSTGRES_FIXTURES.intersection(getattr(item, "fixturenames", ())):
        return True
    callspec = getattr(item, "callspec", None)
    return callspec is not None and callspec.params.get("database_url") == "postgresql"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the PostgreSQL tests ``postgres``: ``-m "not postgres"`` runs SQLite only."""
    for item in items:
        if uses_postgres(item):
            item.add_marker(pytest.mark.postgres)


@pytest.fixture
def reference_dir() -> Path:
    if not REFERENCE.is_dir():
        pytest.skip(f"reference material not found at {REFERENCE} (../shared/reference)")
    return REFERENCE
