"""A rest-hook Subscription's consecutive failed notifications, across its messages (table
``subscription_failures``): ``counted`` adds one and says how many there are now; a
success (or the Subscription set to ``error``, or a client's resume) clears the count
(``cleared``). Shared by every process: whichever sends, the count is the subscription's.
"""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import Executable

from fhir_server.core.fhirtime import utcnow
from fhir_server.storage.port import Store
from fhir_server.storage.schema import subscription_failures

ERROR_CHARS = 500
_F = subscription_failures.c


async def counted(store: Store, sub_id: str, error: str) -> int:
    """One more failure of ``sub_id``: the count now (1 after a success)."""
    row = {"subscription_id": sub_id, "failures": 1, "last_error": error[:ERROR_CHARS]}
    async with store.writing() as session:
        insert = postgresql.insert if session.dialect == "postgresql" else sqlite.insert
        statement = insert(subscription_failures).values(**row, updated=utcnow())
        statement = statement.on_conflict_do_update(
            index_elements=[_F.subscription_id],
            set_={
                "failures": _F.failures + 1,
                "last_error": statement.excluded.last_error,
                "updated": statement.excluded.updated,
            },
        )
        await session.execute(statement)
        rows = await session.fetch(select(_F.failures).where(_F.subscription_id == sub_id))
    return int(rows[0][0])


def cleared(sub_id: str) -> Executable:
    """The statement that clears the count of ``sub_id`` (run in the caller's transaction)."""
    return delete(subscription_failures).where(_F.subscription_id == sub_id)


async def count(store: Store, sub_id: str) -> int:
    async with store.reading() as session:
        rows = await session.fetch(select(_F.failures).where(_F.subscription_id == sub_id))
    return int(rows[0][0]) if rows else 0
