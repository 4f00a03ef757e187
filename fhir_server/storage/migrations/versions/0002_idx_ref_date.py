"""idx_ref_date: reference + date pairs (Slot schedule + start) in one index row

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 16:20:00

The table is filled from the existing reference and date rows, so no reindex is needed.
The pair is written out literally (not read from ``search.composites``): a migration must
keep doing what it did when it was written.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "idx_ref_date",
        sa.Column("res_pk", PK, nullable=False),
        sa.Column("res_type", sa.String(length=64), nullable=False),
        sa.Column("param", sa.String(length=64), nullable=False),
        sa.Column("target_type", sa.String(length=64), nullable=False),
        sa.Column("target_id", sa.String(length=64), nullable=False),
        sa.Column("low", sa.DateTime(timezone=True), nullable=True),
        sa.Column("high", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["res_pk"], ["resources.pk"], ondelete="CASCADE"),
    )
    op.execute(
        """
        INSERT INTO idx_ref_date (res_pk, res_type, param, target_type, target_id, low, high)
        SELECT r.res_pk, r.res_type, 'schedule+start', r.target_type, r.target_id,
               d.low, d.high
        FROM idx_reference r
        JOIN idx_date d ON d.res_pk = r.res_pk AND d.res_type = r.res_type
             AND d.param = 'start'
        WHERE r.res_type = 'Slot' AND r.param = 'schedule' AND r.url IS NULL
          AND r.target_type IS NOT NULL AND r.target_id IS NOT NULL
        """
    )
    with op.batch_alter_table("idx_ref_date", schema=None) as batch_op:
        batch_op.create_index(
            "ix_idx_ref_date_0",
            ["res_type", "param", "target_id", "target_type", "low", "high", "res_pk"],
            unique=False,
        )
        batch_op.create_index("ix_idx_ref_date_res", ["res_pk"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("idx_ref_date", schema=None) as batch_op:
        batch_op.drop_index("ix_idx_ref_date_res")
        batch_op.drop_index("ix_idx_ref_date_0")
    op.drop_table("idx_ref_date")
