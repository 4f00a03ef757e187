"""How the availability cache reads agendas on SQLite: by index, with or without statistics.

An agenda's statement joins each slot's ``schedule+start`` row to its status tokens. Without
statistics (a database never analyzed), SQLite's planner once chose the token index matching
more equalities, (res_type, param, ...), and read every Slot's status row for each slot: more
than three minutes of preload at 100 k slots. The join must go through the slot's key.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy.dialects import sqlite

from fhir_server.availability import agendas
from fhir_server.storage.sqlite import SqliteStore


def plan_of_agendas(path: Path) -> list[str]:
    slots, _ = agendas._fill_statements("sqlite")
    compiled = slots.params(ids=["s1", "s2"]).compile(
        dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}
    )
    with sqlite3.connect(path) as conn:
        return [str(row[3]) for row in conn.execute(f"EXPLAIN QUERY PLAN {compiled}")]


async def test_status_tokens_are_joined_by_slot_key(tmp_path: Path) -> None:
    path = tmp_path / "fhir.sqlite"
    store = SqliteStore(f"sqlite+aiosqlite:///{path}")
    await store.migrate()
    await store.close()
    with sqlite3.connect(path) as conn:  # no statistics at all
        conn.execute("DELETE FROM sqlite_stat1")
    plan = plan_of_agendas(path)
    assert any("idx_ref_date" in step and "ix_idx_ref_date_0" in step for step in plan), plan
    (status,) = [step for step in plan if "status" in step]
    assert "ix_idx_token_res (res_pk=?)" in status, plan
