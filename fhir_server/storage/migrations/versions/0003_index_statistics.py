"""extended statistics on the index tables' (res_type, param, ...) columns (PostgreSQL)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 17:50:00

Every index row names its resource type and parameter, and the two are strongly correlated
(``param = 'actor'`` only occurs with a few types). PostgreSQL multiplies their selectivities
as if independent and estimated "Schedule rows of ``actor``" at 1 row when there were 1,950
(1 M slots); it then drove a chain from every Schedule instead of from the 5 practitioners
asked for (30 ms instead of 0.4 ms). Functional-dependency and MCV statistics on the
columns fix the estimates. SQLite has no such statistics: nothing to do there.
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# table -> the correlated columns its lookups start with
COLUMNS = {
    "idx_token": ("res_type", "param", "system"),
    "idx_string": ("res_type", "param"),
    "idx_date": ("res_type", "param"),
    "idx_reference": ("res_type", "param", "target_type"),
    "idx_uri": ("res_type", "param"),
    "idx_number": ("res_type", "param"),
    "idx_quantity": ("res_type", "param"),
    "idx_geo": ("res_type", "param"),
    "idx_ref_date": ("res_type", "param", "target_type"),
}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, columns in COLUMNS.items():
        op.execute(
            f"CREATE STATISTICS IF NOT EXISTS st_{table} (dependencies, mcv)"
            f" ON {', '.join(columns)} FROM {table}"
        )
        op.execute(f"ANALYZE {table}")  # the statistics exist once analysed


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in COLUMNS:
        op.execute(f"DROP STATISTICS IF EXISTS st_{table}")
