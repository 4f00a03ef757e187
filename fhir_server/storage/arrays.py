"""``column IN (values)`` written so that PostgreSQL sees one parameter, whatever the count.

An ``IN`` list is one bind parameter per value: a statement of 150 pks is 150 parameters,
and every distinct count is another statement for asyncpg to prepare. On PostgreSQL
``column = ANY(:name)`` binds the whole list as one array, so a statement built once is
prepared once. SQLite has no arrays: there it stays an (expanding) ``IN``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ARRAY, ColumnElement, any_, bindparam
from sqlalchemy.types import TypeEngine


def any_in(
    dialect: str,
    column: Any,
    name: str,
    kind: type[TypeEngine[Any]] | TypeEngine[Any],
    values: Sequence[Any] | None = None,
) -> ColumnElement[bool]:
    """``column IN :name`` for ``dialect`` ("postgresql": one array of ``kind`` items).

    ``values`` None: the statement is built once and the values bound at each execution
    (``{name: [...]}``); otherwise they are bound now."""
    condition: ColumnElement[bool]
    if dialect == "postgresql":
        array = ARRAY(kind)
        param = (
            bindparam(name, type_=array)
            if values is None
            else bindparam(name, list(values), type_=array)
        )
        condition = column == any_(param)
    elif values is None:
        condition = column.in_(bindparam(name, expanding=True))
    else:
        condition = column.in_(bindparam(name, list(values), expanding=True))
    return condition
