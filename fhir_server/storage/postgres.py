"""Production storage: PostgreSQL through asyncpg.

Rows read for an update are locked (``SELECT ... FOR UPDATE``); conditional creates and
updates on one type take a transaction-scoped advisory lock so that two racing requests
for the same identifier make exactly one resource. Several server processes can share one
database: no state that must agree lives in process memory.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import create_async_engine

from fhir_server.storage._sql import SqlStore, SqlWriteSession
from fhir_server.storage.port import Stored


class PostgresWriteSession(SqlWriteSession):
    lock_rows = True
    insert = staticmethod(pg_insert)

    async def lock_conditional(self, res_type: str) -> None:
        key = func.hashtext(f"fhir-conditional:{res_type}")
        await self.conn.execute(select(func.pg_advisory_xact_lock(key)))


_READ_SQL = (
    "SELECT res_type, res_id, version, last_updated, deleted, content, pk"
    " FROM resources WHERE res_type = $1 AND res_id = $2"
)


# Chained searches and _has nest into ~10 relations (the SAS SOS query: 10). PostgreSQL's
# default collapse limit (8) plans them in pieces and then reads every Slot's index rows;
# 12 lets it see them whole, and geqo_threshold above it keeps planning exhaustive.
_PLANNER = {"join_collapse_limit": "12", "from_collapse_limit": "12", "geqo_threshold": "13"}


class PostgresStore(SqlStore):
    dialect = "postgresql"
    write_session_class = PostgresWriteSession

    def __init__(self, url: str, pool_size: int = 10) -> None:
        engine = create_async_engine(
            url,
            pool_size=pool_size,
            max_overflow=pool_size,
            connect_args={"server_settings": _PLANNER},
        )
        # Reads share the pool but skip BEGIN/ROLLBACK: one round trip per query.
        super().__init__(engine, engine.execution_options(isolation_level="AUTOCOMMIT"))

    async def read(self, res_type: str, res_id: str) -> Stored | None:
        # The hottest path: asyncpg's prepared-statement cache directly, in autocommit.
        async with self.read_engine.connect() as conn:
            raw = await conn.get_raw_connection()
            row = await raw.driver_connection.fetchrow(_READ_SQL, res_type, res_id)  # type: ignore[union-attr]
        if row is None:
            return None
        return Stored(row[0], row[1], row[2], row[3], row[4], bytes(row[5]), "", row[6])
