"""What a caller may see, as SQL: the where-clause of ``SqlStore.visible``.

The access policy (``auth/policy.py``) decides a ``ReadScope`` per caller; this module turns
it into one condition on ``resources`` or ``history`` (or an alias: both have ``res_type``,
``owner``, ``labels`` and ``party``), which every select of resources for that caller adds.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, and_, false, or_
from sqlalchemy.sql import FromClause

from auth.policy import UNLABELLED, ReadScope

SLOT = "Slot"


def clause(scope: ReadScope, rows: FromClause) -> ColumnElement[bool] | None:
    """The rows of ``rows`` that ``scope`` admits; None: all of them."""
    c = rows.c
    conditions: list[ColumnElement[bool]] = []
    if scope.types is not None:
        if not scope.types:
            return false()
        conditions.append(c.res_type.in_(sorted(scope.types)))
    if scope.never:
        conditions.append(c.res_type.not_in(sorted(scope.never)))
    if scope.owner_only:
        mine = c.owner.is_(None) if scope.owner is None else c.owner == scope.owner
        if scope.party_types and scope.owner is not None:
            # ...or a row of a party type it is party to (an Appointment on its slots)
            party = and_(c.party == scope.owner, c.res_type.in_(sorted(scope.party_types)))
            mine = or_(mine, party)
        conditions.append(mine)
    if scope.own_types and not scope.owner_only:
        mine = c.owner.is_(None) if scope.owner is None else c.owner == scope.owner
        conditions.append(or_(c.res_type.not_in(sorted(scope.own_types)), mine))
    if scope.slot_labels is not None:
        # A Slot shows when one of its labels is allowed; labels are stored "|A|B|".
        shown: list[ColumnElement[bool]] = [
            c.labels.like(f"%|{code}|%") for code in sorted(scope.slot_labels)
        ]
        if UNLABELLED in scope.slot_labels:
            shown.append(c.labels.is_(None))  # a Slot written before labels existed
        conditions.append(or_(c.res_type != SLOT, *shown))
    if not conditions:
        return None
    return conditions[0] if len(conditions) == 1 else and_(*conditions)
