"""Production storage: PostgreSQL through asyncpg.

Rows read for an update are locked (``SELECT ... FOR UPDATE``); conditional creates and
updates on one type take a transaction-scoped advisory lock so that two racing requests
for the same identifier make exactly one resource. Several server processes can share one
database: no state that must agree lives in process memory.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from fhir_server.storage._sql import SqlStore, SqlWriteSession


class PostgresWriteSession(SqlWriteSession):
    lock_rows = True

    async def lock_conditional(self, res_type: str) -> None:
        key = func.hashtext(f"fhir-conditional:{res_type}")
        await self.conn.execute(select(func.pg_advisory_xact_lock(key)))


class PostgresStore(SqlStore):
    dialect = "postgresql"
    write_session_class = PostgresWriteSession

    def __init__(self, url: str, pool_size: int = 10) -> None:
        super().__init__(create_async_engine(url, pool_size=pool_size, max_overflow=pool_size))
