"""Libraries that would log URLs or SQL parameters stay quiet below WARNING, even at debug."""

from __future__ import annotations

import logging

import pytest

from fhir_server import logging as fhir_logging


@pytest.mark.parametrize("name", ["httpx", "aiosqlite", "sqlalchemy.engine", "alembic"])
def test_noisy_libraries_log_only_problems(name: str) -> None:
    fhir_logging.configure("debug", "json")
    try:
        assert logging.getLogger(name).getEffectiveLevel() == logging.WARNING
        assert logging.getLogger("fhir_server").getEffectiveLevel() == logging.DEBUG
    finally:
        fhir_logging.configure("info", "console")
