"""party of resources and history: the owner of the slots an Appointment books

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 13:40:00

``party``: for an Appointment, the owner of the Slot(s) it references (the slot's vendor,
who reads the appointment and records what happens at the practice); NULL for other types.
Filled here for the Appointments already stored, each version from its own slot references
and the slots' current owner (a slot's owner never changes). The rule is written out
literally (not read from ``fhir_server``): a migration must keep doing what it did when it
was written. A partial index on ``resources`` serves the vendor's read clause.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

BATCH = 2000


def first_slot(content: bytes) -> str | None:
    """The id of the first ``Slot/<id>`` an Appointment references, if any."""
    try:
        resource: Any = json.loads(bytes(content))
    except ValueError:
        return None
    refs = resource.get("slot") if isinstance(resource, dict) else None
    for ref in refs if isinstance(refs, list) else ():
        text = ref.get("reference") if isinstance(ref, dict) else None
        if isinstance(text, str):
            res_type, _, res_id = text.rpartition("/")
            if res_type.endswith("Slot") and res_id:
                return res_id
    return None


def _owners(conn: Any, slot_ids: set[str]) -> dict[str, str | None]:
    res = sa.table("resources", sa.column("res_type"), sa.column("res_id"), sa.column("owner"))
    found = conn.execute(
        sa.select(res.c.res_id, res.c.owner).where(
            res.c.res_type == "Slot", res.c.res_id.in_(sorted(slot_ids))
        )
    ).fetchall()
    return {r[0]: r[1] for r in found}


def _fill(table: str, key: str) -> None:
    conn = op.get_bind()
    history = table == "history"
    names = [key, "version"] if history else [key]
    rows = sa.table(table, *map(sa.column, names), sa.column("res_type"), sa.column("content"))
    target = sa.table(table, *map(sa.column, names), sa.column("party"))
    order = [rows.c[n] for n in names]
    after: tuple[Any, ...] = ()
    while True:
        stmt = sa.select(*order, rows.c.content).where(rows.c.res_type == "Appointment")
        if after:
            stmt = stmt.where(sa.tuple_(*order) > sa.tuple_(*after))
        found = conn.execute(stmt.order_by(*order).limit(BATCH)).fetchall()
        if not found:
            return
        slots: dict[tuple[Any, ...], str] = {}
        for row in found:
            slot = first_slot(row[-1])
            if slot is not None:
                slots[tuple(row[:-1])] = slot
        owners = _owners(conn, set(slots.values())) if slots else {}
        params = []
        for keys, slot in slots.items():
            party = owners.get(slot)
            if party is None:
                continue
            p = {"b_key": keys[0], "b_party": party}
            if history:
                p["b_version"] = keys[1]
            params.append(p)
        if params:
            where = [target.c[key] == sa.bindparam("b_key")]
            if history:
                where.append(target.c.version == sa.bindparam("b_version"))
            conn.execute(
                sa.update(target).where(*where).values(party=sa.bindparam("b_party")), params
            )
        after = tuple(found[-1][:-1])


def upgrade() -> None:
    for table in ("resources", "history"):
        op.add_column(table, sa.Column("party", sa.String(length=128), nullable=True))
    _fill("resources", "pk")
    _fill("history", "res_pk")
    op.create_index(
        "ix_resources_party",
        "resources",
        ["party", "res_type"],
        postgresql_where=sa.text("party IS NOT NULL"),
        sqlite_where=sa.text("party IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_resources_party", table_name="resources")
    for table in ("resources", "history"):
        op.drop_column(table, "party")
