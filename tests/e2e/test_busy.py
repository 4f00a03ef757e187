"""A real ``fhir-server serve`` process with one database connection (plus one at peaks), a
short wait for it and a short statement limit: requests that cannot get a connection, or
whose statement waits past the limit on a lock another process holds, are answered 503 with
``Retry-After`` (never 500) and change nothing."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.e2e.test_serve import BIN, ROOT, serving, with_packages

pytestmark = pytest.mark.e2e
FHIR = "application/fhir+json"
LIMITS = {
    "FHIR_DB_POOL_SIZE": "1",
    "FHIR_DB_POOL_TIMEOUT": "0.5",
    "FHIR_STATEMENT_TIMEOUT_MS": "1500",
    "FHIR_AVAILABILITY_PRELOAD": "false",
    "FHIR_VALIDATE_PROFILES": "false",
}


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[str]:
    env = with_packages(
        {**os.environ, "FHIR_DATABASE_URL": database_url, "FHIR_LOG_LEVEL": "warning", **LIMITS}
    )
    if not database_url.startswith("sqlite"):
        migrated = subprocess.run(
            [str(BIN / "fhir-server"), "migrate"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert migrated.returncode == 0, migrated.stderr
    with serving(env, tmp_path / "server.log") as base:
        yield base


def practitioner(rpps: str) -> bytes:
    return (
        '{"resourceType":"Practitioner","identifier":'
        f'[{{"system":"urn:oid:1.2.250.1.71.4.2.1","value":"{rpps}"}}]}}'
    ).encode()


def at_once(*requests: Callable[[], httpx.Response]) -> list[httpx.Response]:
    with ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(lambda request: request(), requests))


def codes(responses: list[httpx.Response]) -> list[str]:
    out = []
    for r in responses:
        assert r.status_code == 503, r.text
        assert r.headers["Retry-After"] == "1"
        outcome = r.json()
        assert outcome["resourceType"] == "OperationOutcome"
        out += [i["code"] for i in outcome["issue"]]
    return sorted(out)


def test_busy_database(server: str, database_url: str, tmp_path: Path) -> None:
    with httpx.Client(base_url=server, timeout=30) as c:

        def create() -> httpx.Response:
            return c.post(
                "/Practitioner",
                content=practitioner("810000000009"),
                headers={"Content-Type": FHIR},
            )

        def search() -> httpx.Response:
            return c.get("/Practitioner", params={"identifier": "810000000009"})

        if database_url.startswith("sqlite"):
            other = sqlite3.connect(tmp_path / "fhir.sqlite", isolation_level=None)
            other.execute("BEGIN IMMEDIATE")  # another process's write lock
            try:
                # one writer waits for the lock past the limit, the other for its turn
                assert codes(at_once(create, create)) == ["transient", "transient"]
            finally:
                other.close()
        else:
            dsn = database_url.replace("postgresql+asyncpg", "postgresql")
            with psycopg.connect(dsn) as other:
                other.execute("LOCK TABLE resources IN ACCESS EXCLUSIVE MODE")
                # two take the connections and wait on the lock past the limit; the third
                # waits for a connection
                assert codes(at_once(search, search, create)) == ["timeout", "timeout", "transient"]
                other.rollback()
        assert search().json()["total"] == 0  # nothing was created
        assert create().status_code == 201
        assert search().json()["total"] == 1
