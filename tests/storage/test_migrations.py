"""What the migrations leave behind beyond the tables of ``schema``."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from fhir_server.storage.port import Store


async def test_postgresql_has_extended_statistics_on_index_tables(store: Store) -> None:
    if store.dialect != "postgresql":
        pytest.skip("extended statistics are a PostgreSQL feature")
    async with store.reading() as session:
        rows = await session.fetch(text("SELECT stxname FROM pg_statistic_ext ORDER BY stxname"))
    names = {row[0] for row in rows}
    assert {"st_idx_token", "st_idx_reference", "st_idx_ref_date", "st_idx_date"} <= names
