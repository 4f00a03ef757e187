"""deliveries: the persistent outbox of messages to other parties (docs/delivery.md)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 10:35:00

One row per message (a version of an Appointment for the SAS platform, a subscription's
notification), written in the same transaction as the version it carries: its channel, its
ordering key (messages of one key are sent in ``id`` order), the resource version, the
body, its state (pending, sending, sent, failed), attempts and next attempt, the lease of
the process sending it, the last error and when it was created and sent.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "deliveries",
        sa.Column("id", PK, autoincrement=True, nullable=False),
        sa.Column("channel", sa.String(length=128), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("res_type", sa.String(length=64), nullable=True),
        sa.Column("res_id", sa.String(length=64), nullable=True),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=True),
        sa.Column("headers", sa.Text(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_attempt", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_owner", sa.String(length=128), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    unsent = sa.text("state IN ('pending', 'sending')")  # claims read these rows only
    op.create_index(
        "ix_deliveries_unsent",
        "deliveries",
        ["id"],
        postgresql_where=unsent,
        sqlite_where=unsent,
    )
    op.create_index("ix_deliveries_channel_key", "deliveries", ["channel", "key", "id"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_channel_key", table_name="deliveries")
    op.drop_index("ix_deliveries_unsent", table_name="deliveries")
    op.drop_table("deliveries")
