"""Ingestion fixtures: a context with SAS-profile validation over the ``store`` fixture
(SQLite and PostgreSQL), and the test-only ``test-simple`` format registered."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from fhir_server.app import make_context
from fhir_server.ingest.reconcile import Vanished
from fhir_server.ingest.report import RunReport
from fhir_server.ingest.run import ingest
from fhir_server.interactions.context import Context
from fhir_server.settings import Settings
from fhir_server.storage.port import Store
from mappings.contract import MappingOptions
from tests.ingest.simple_format import SIMPLE

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference"


def ingest_settings(**extra: Any) -> Settings:
    return Settings(
        package_path=REFERENCE / "fhir-packages",
        terminology_paths=[REFERENCE / "nos"],
        audit=False,
        **extra,
    )


@pytest.fixture
def ctx(store: Store) -> Context:
    return make_context(ingest_settings(), store)


async def run(
    ctx: Context, doc: dict[str, Any], vanished: Vanished = "delete", **options: Any
) -> RunReport:
    data = orjson.dumps(doc)
    options.setdefault("booking_url", "https://rdv.example.org/book")  # SAS: every slot has one
    return await ingest(
        ctx, SIMPLE, data, MappingOptions(source="feed.json", **options), vanished=vanished
    )
