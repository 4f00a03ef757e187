"""Booking fixtures: a context with SAS-profile validation over the ``store`` fixture
(SQLite and PostgreSQL), as ingestion and pull mode use it."""

from __future__ import annotations

import pytest

from fhir_server.app import make_context
from fhir_server.interactions.context import Context
from fhir_server.storage.port import Store
from tests.ingest.conftest import ingest_settings


@pytest.fixture
def ctx(store: Store) -> Context:
    return make_context(ingest_settings(), store)
