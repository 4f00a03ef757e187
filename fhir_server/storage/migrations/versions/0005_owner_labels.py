"""owner and labels of resources and history, for the access policy

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 02:10:00

``owner``: who wrote the resource first (a client id, else a user id); NULL for what the
server wrote itself (``fhir-server load``) and for everything written before this revision.
``labels``: a Slot's TRE-R314 ``meta.security`` codes as ``|PRO|PUBLIC|`` (``|UNLABELLED|``
without any), NULL for other types; filled here from the stored JSON of every Slot version.
The rule is written out literally (not read from ``auth.policy``): a migration must keep
doing what it did when it was written.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TYPE_CRENEAU = "https://mos.esante.gouv.fr/NOS/TRE_R314-TypeCreneau/FHIR/TRE-R314-TypeCreneau"
BATCH = 2000


def labels(content: bytes) -> str:
    try:
        resource: Any = json.loads(bytes(content))
    except ValueError:
        resource = {}
    meta = resource.get("meta") if isinstance(resource, dict) else None
    security = meta.get("security") if isinstance(meta, dict) else None
    codes = {
        str(c["code"])
        for c in (security if isinstance(security, list) else [])
        if isinstance(c, dict) and c.get("system") == TYPE_CRENEAU and c.get("code")
    }
    return "|" + "|".join(sorted(codes or {"UNLABELLED"})) + "|"


def _fill(table: str, key: str) -> None:
    conn = op.get_bind()
    rows = sa.table(table, sa.column(key), sa.column("res_type"), sa.column("content"))
    keys: list[Any] = [sa.column(key)] + ([sa.column("version")] if table == "history" else [])
    target = sa.table(table, *keys, sa.column("labels"))
    after: tuple[Any, ...] = ()
    while True:
        order = [rows.c[key]] + ([sa.column("version")] if table == "history" else [])
        stmt = sa.select(*order, rows.c.content).where(rows.c.res_type == "Slot")
        if after:
            stmt = stmt.where(sa.tuple_(*order) > sa.tuple_(*after))
        found = conn.execute(stmt.order_by(*order).limit(BATCH)).fetchall()
        if not found:
            return
        params = [{"b_key": r[0], "b_labels": labels(r[-1])} for r in found]
        where = [target.c[key] == sa.bindparam("b_key")]
        if table == "history":
            for p, r in zip(params, found, strict=True):
                p["b_version"] = r[1]
            where.append(target.c.version == sa.bindparam("b_version"))
        conn.execute(
            sa.update(target).where(*where).values(labels=sa.bindparam("b_labels")), params
        )
        after = tuple(found[-1][:-1])


def upgrade() -> None:
    for table in ("resources", "history"):
        op.add_column(table, sa.Column("owner", sa.String(length=128), nullable=True))
        op.add_column(table, sa.Column("labels", sa.Text(), nullable=True))
    _fill("resources", "pk")
    _fill("history", "res_pk")


def downgrade() -> None:
    for table in ("resources", "history"):
        op.drop_column(table, "labels")
        op.drop_column(table, "owner")
