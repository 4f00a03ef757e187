"""purge indexes and per-subscription failures (docs/delivery.md, docs/subscriptions.md)

Revision ID: 0010
Revises: 0008
Create Date: 2026-12-07 13:50:00

The purge of the outbox (``fhir-server purge``, the senders' housekeeping) finds the sent
rows by when they were sent and the failed ones by when they were created: two partial
indexes, so that it reads only what it deletes. ``subscription_failures`` counts a
rest-hook Subscription's consecutive failed notifications across its messages.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    sent = sa.text("state = 'sent'")
    failed = sa.text("state = 'failed'")
    op.create_index(
        "ix_deliveries_sent", "deliveries", ["sent"], postgresql_where=sent, sqlite_where=sent
    )
    op.create_index(
        "ix_deliveries_failed",
        "deliveries",
        ["created"],
        postgresql_where=failed,
        sqlite_where=failed,
    )
    op.create_table(
        "subscription_failures",
        sa.Column("subscription_id", sa.String(length=64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("subscription_id"),
    )


def downgrade() -> None:
    op.drop_table("subscription_failures")
    op.drop_index("ix_deliveries_failed", table_name="deliveries")
    op.drop_index("ix_deliveries_sent", table_name="deliveries")
