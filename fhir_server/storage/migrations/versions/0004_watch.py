"""idx_watch and watch_versions: change keys for the per-process availability cache

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 18:40:00

``idx_watch`` is filled from the existing rows (a Slot's relative schedule reference; a
Schedule's own key and its relative actors; a Practitioner's identifiers), so no reindex
is needed. The keys are written out literally (not
read from ``search.watch``): a migration must keep doing what it did when it was written.
No counter row means "never changed" (version 0).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "idx_watch",
        sa.Column("res_pk", PK, nullable=False),
        sa.Column("res_type", sa.String(length=64), nullable=False),
        sa.Column("param", sa.String(length=64), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["res_pk"], ["resources.pk"], ondelete="CASCADE"),
    )
    op.create_table(
        "watch_versions",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.execute(
        """
        INSERT INTO idx_watch (res_pk, res_type, param, key)
        SELECT DISTINCT r.res_pk, r.res_type, r.param, r.target_type || '/' || r.target_id
        FROM idx_reference r
        WHERE r.res_type = 'Slot' AND r.param = 'schedule' AND r.url IS NULL
          AND r.target_type IS NOT NULL AND r.target_id IS NOT NULL
        """
    )
    op.execute(
        """
        INSERT INTO idx_watch (res_pk, res_type, param, key)
        SELECT pk, res_type, '_self', 'Schedule/' || res_id
        FROM resources WHERE res_type = 'Schedule' AND deleted = false
        """
    )
    op.execute(
        """
        INSERT INTO idx_watch (res_pk, res_type, param, key)
        SELECT DISTINCT r.res_pk, r.res_type, r.param,
               'Schedule?actor=' || r.target_type || '/' || r.target_id
        FROM idx_reference r
        WHERE r.res_type = 'Schedule' AND r.param = 'actor' AND r.url IS NULL
          AND r.target_type IS NOT NULL AND r.target_id IS NOT NULL
        """
    )
    op.execute(
        """
        INSERT INTO idx_watch (res_pk, res_type, param, key)
        SELECT DISTINCT t.res_pk, t.res_type, t.param,
               'Practitioner?identifier=' || t.system || '|' || t.code
        FROM idx_token t
        WHERE t.res_type = 'Practitioner' AND t.param = 'identifier'
          AND t.system IS NOT NULL AND t.system <> '' AND t.code IS NOT NULL
        """
    )
    with op.batch_alter_table("idx_watch", schema=None) as batch_op:
        batch_op.create_index("ix_idx_watch_res", ["res_pk"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("idx_watch", schema=None) as batch_op:
        batch_op.drop_index("ix_idx_watch_res")
    op.drop_table("watch_versions")
    op.drop_table("idx_watch")
