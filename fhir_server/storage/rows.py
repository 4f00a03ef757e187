"""The one conversion of a database row into a ``Stored`` resource.

Storage reads resources and history with these columns, and so do the searches that load
resources themselves (``_include``, the availability answer): ``stored_from_row`` builds the
``Stored`` of a row of ``STORED_COLUMNS`` or ``HISTORY_COLUMNS``, whichever engine or driver
returned it (a SQLAlchemy row or an asyncpg record). Timestamps arrive aware in UTC
(``types.UtcDateTime``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fhir_server.storage import schema
from fhir_server.storage.port import Stored

R = schema.resources
H = schema.history

STORED_COLUMNS = (
    R.c.pk,
    R.c.res_type,
    R.c.res_id,
    R.c.version,
    R.c.last_updated,
    R.c.deleted,
    R.c.content,
)
# The same for a version in ``history``, with the method that wrote it last.
HISTORY_COLUMNS = (
    H.c.res_pk,
    H.c.res_type,
    H.c.res_id,
    H.c.version,
    H.c.last_updated,
    H.c.deleted,
    H.c.content,
    H.c.method,
)

# ``STORED_COLUMNS`` with the owner, labels and party: what a write reads of the current version.
OWNED_COLUMNS = (*STORED_COLUMNS, R.c.owner, R.c.labels, R.c.party)


def stored_from_row(row: Sequence[Any]) -> Stored:
    """A ``Stored`` from a row of ``STORED_COLUMNS`` (or ``HISTORY_COLUMNS``: with its method)."""
    method = row[7] if len(row) > 7 else ""
    return Stored(row[1], row[2], row[3], row[4], bool(row[5]), bytes(row[6]), method, row[0])


def owned_from_row(row: Sequence[Any]) -> Stored:
    """A ``Stored`` from a row of ``OWNED_COLUMNS``."""
    return Stored(
        row[1],
        row[2],
        row[3],
        row[4],
        bool(row[5]),
        bytes(row[6]),
        "",
        row[0],
        row[7],
        row[8],
        row[9],
    )
