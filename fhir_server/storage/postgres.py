"""Production storage: PostgreSQL through asyncpg.

Rows read for an update are locked (``SELECT ... FOR UPDATE``); conditional creates and
updates on one type take a transaction-scoped advisory lock so that two racing requests
for the same identifier make exactly one resource. Several server processes can share one
database: no state that must agree lives in process memory.

Time limits: ``statement_timeout`` on every connection, and the pool's ``pool_timeout``;
both, and the errors that ask for a retry (deadlock, serialization), end as a 503.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

from sqlalchemy import Table, func, select, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.sql import Executable
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import TextClause

from auth.policy import Policy
from fhir_server.core.caller import SYSTEM, Caller
from fhir_server.core.errors import FhirError
from fhir_server.storage import schema
from fhir_server.storage._sql import (
    Key,
    SqlReadSession,
    SqlStore,
    SqlWriteSession,
    busy,
    resource_values,
)
from fhir_server.storage.port import Stored
from fhir_server.storage.rows import OWNED_COLUMNS, stored_from_row

# Buffered rows are written with one statement per table whatever their number: each column
# travels as one array parameter and ``unnest`` turns the arrays back into rows. Against
# ``executemany`` (one Bind/Execute per row) or a multi-row VALUES (one parameter per value,
# at most 32,767 per statement) this is ~8 µs per row instead of ~25 (docs/perf.md).
_DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]
_UPDATED = (
    "version",
    "last_updated",
    "deleted",
    "content",
    "owner",
    "labels",
    "party",
)  # what an update changes
_RESOURCE_COLUMNS = ("res_type", "res_id", *_UPDATED)
# Column types an array of Python values binds to without surprise; any other (a JSON or an
# array column of a future index table) takes the generic path.
_UNNEST_TYPES = {
    "BIGINT",
    "INTEGER",
    "BOOLEAN",
    "TEXT",
    "BYTEA",
    "FLOAT",
    "NUMERIC",
    "TIMESTAMP WITH TIME ZONE",
}


def _array_type(table: Table, column: str) -> str | None:
    name = table.c[column].type.compile(dialect=_DIALECT)
    base = name.split("(", 1)[0]
    return f"{name}[]" if name in _UNNEST_TYPES or base == "VARCHAR" else None


@cache
def _unnest(table: Table, columns: tuple[str, ...], prefix: str = "c") -> str | None:
    """``SELECT * FROM unnest(CAST(:c0 AS type[]), ...)`` over ``columns``, or None (the
    parameters named ``prefix`` + position)."""
    arrays = [_array_type(table, c) for c in columns]
    if None in arrays:
        return None
    return "SELECT * FROM unnest({})".format(
        ", ".join(f"CAST(:{prefix}{i} AS {a})" for i, a in enumerate(arrays))
    )


@cache
def _insert_sql(table: Table, columns: tuple[str, ...]) -> TextClause | None:
    source = _unnest(table, columns)
    if source is None:
        return None
    return text(f"INSERT INTO {table.name} ({', '.join(columns)}) {source}")


@cache
def _insert_all_sql(parts: tuple[tuple[Table, tuple[str, ...]], ...]) -> TextClause | None:
    """The inserts of several tables as ONE statement: each a data-modifying ``WITH`` part
    (PostgreSQL runs every one of them to completion), parameters ``t<n>_<i>``."""
    inserts = []
    for n, (table, columns) in enumerate(parts):
        source = _unnest(table, columns, f"t{n}_")
        if source is None:
            return None
        inserts.append(f"i{n} AS (INSERT INTO {table.name} ({', '.join(columns)}) {source})")
    return text(f"WITH {', '.join(inserts)} SELECT 1")


# The index rows of updated or deleted resources, removed from every index table in ONE
# statement; it returns the change keys their watch rows named (every part of a statement
# reads the same snapshot: the SELECT sees the rows its DELETE parts remove).
_CLEAR_INDEX = text(
    "WITH "
    + ", ".join(
        f"d{n} AS (DELETE FROM {table.name} WHERE res_pk = ANY(CAST(:pks AS BIGINT[])))"
        for n, table in enumerate(schema.INDEX_TABLES.values())
    )
    + f" SELECT DISTINCT key FROM {schema.idx_watch.name}"
    " WHERE res_pk = ANY(CAST(:pks AS BIGINT[]))"
)


# Rows come out of ``unnest`` in array order and take their pk from the sequence in that
# order: pks follow put order within a transaction, as single-row inserts did.
_INSERT_RESOURCES = text(
    f"INSERT INTO resources ({', '.join(_RESOURCE_COLUMNS)})"
    f" {_unnest(schema.resources, _RESOURCE_COLUMNS)}"
    " ON CONFLICT (res_type, res_id) DO NOTHING RETURNING pk, res_type, res_id"
)
# The rows were locked by ``current`` (SELECT ... FOR UPDATE); the version test stays as a
# guard against a ``previous`` read outside this transaction.
_UPDATE_RESOURCES = text(
    "UPDATE resources AS r"
    " SET version = v.version, last_updated = v.last_updated, deleted = v.deleted,"
    " content = v.content, owner = v.owner, labels = v.labels,"
    " party = v.party"
    " FROM unnest(CAST(:pk AS BIGINT[]), CAST(:previous AS INTEGER[]),"
    " CAST(:version AS INTEGER[]), CAST(:last_updated AS TIMESTAMP WITH TIME ZONE[]),"
    " CAST(:deleted AS BOOLEAN[]), CAST(:content AS BYTEA[]), CAST(:owner AS VARCHAR[]),"
    " CAST(:labels AS TEXT[]), CAST(:party AS VARCHAR[]))"
    " AS v(pk, previous, version, last_updated, deleted, content, owner, labels, party)"
    " WHERE r.pk = v.pk AND r.version = v.previous"
)


class PostgresReadSession(SqlReadSession):
    """Statements run with ``params`` are the ones built once and run at every search (the
    availability cache's): they go to asyncpg's prepared-statement cache directly, without
    SQLAlchemy's execution and row layers (a third of the cost of a SAS search's one
    statement). Others run through SQLAlchemy as usual."""

    async def fetch(
        self, statement: Executable, params: Mapping[str, Any] | None = None
    ) -> Sequence[Any]:
        if params is None:
            return await super().fetch(statement)
        compiled = _compiled(statement, self.conn.dialect)
        values = compiled.construct_params(params) or {}  # with the statement's own literals
        raw = await self.conn.get_raw_connection()
        driver: Any = raw.driver_connection
        rows: Sequence[Any] = await driver.fetch(
            compiled.string, *(values[name] for name in compiled.positiontup or ())
        )
        return rows


_COMPILED: dict[int, tuple[Executable, SQLCompiler]] = {}


def _compiled(statement: Executable, dialect: Dialect) -> SQLCompiler:
    """The statement compiled once (keyed by identity, the statement kept alive with it).
    Meant for statements built once; the table is emptied if others come by the hundred."""
    known = _COMPILED.get(id(statement))
    if known is None or known[0] is not statement:
        if len(_COMPILED) >= 256:
            _COMPILED.clear()
        known = _COMPILED[id(statement)] = (statement, statement.compile(dialect=dialect))  # type: ignore[attr-defined]
    return known[1]


# The current rows of (type, id) pairs, locked: a join with the pairs as two arrays. An OR
# of ``type = t AND id IN (...)`` per type is planned as a sequential scan while the
# table's statistics say it is small (a first ingest: 10 ms per statement at 30,000 rows);
# the join is an index lookup per pair whatever the statistics.
_CURRENT_ROWS = text(
    "SELECT r.pk, r.res_type, r.res_id, r.version, r.last_updated, r.deleted, r.content,"
    " r.owner, r.labels, r.party FROM unnest(CAST(:types AS VARCHAR[]), CAST(:ids AS VARCHAR[]))"
    " AS k(res_type, res_id) JOIN resources AS r"
    " ON r.res_type = k.res_type AND r.res_id = k.res_id FOR UPDATE OF r"
).columns(*OWNED_COLUMNS)


class PostgresWriteSession(SqlWriteSession):
    lock_rows = True
    insert = staticmethod(pg_insert)

    async def _current_rows(self, keys: list[Key]) -> Sequence[Any]:
        params = {"types": [t for t, _ in keys], "ids": [i for _, i in keys]}
        return (await self.conn.execute(_CURRENT_ROWS, params)).fetchall()

    async def lock_conditional(self, res_type: str) -> None:
        key = func.hashtext(f"fhir-conditional:{res_type}")
        await self.conn.execute(select(func.pg_advisory_xact_lock(key)))

    async def _insert_resources(self, creates: list[Stored]) -> dict[Key, int]:
        params: dict[str, Any] = {
            "c0": [s.res_type for s in creates],
            "c1": [s.res_id for s in creates],
            "c2": [s.version for s in creates],
            "c3": [s.last_updated for s in creates],
            "c4": [s.deleted for s in creates],
            "c5": [s.content for s in creates],
            "c6": [s.owner for s in creates],
            "c7": [s.labels for s in creates],
            "c8": [s.party for s in creates],
        }
        result = await self.conn.execute(_INSERT_RESOURCES, params)
        return {(t, i): pk for pk, t, i in result.all()}

    async def _update_resources(self, updates: dict[int, tuple[Stored, int]]) -> int:
        params: dict[str, list[Any]] = {"pk": [], "previous": [], **{k: [] for k in _UPDATED}}
        for pk, (stored, expected) in updates.items():
            params["pk"].append(pk)
            params["previous"].append(expected)
            for k, v in resource_values(stored).items():
                params[k].append(v)
        result = await self.conn.execute(_UPDATE_RESOURCES, params)
        return int(result.rowcount)

    async def _clear_index(self, pks: list[int]) -> set[str]:
        return {k for (k,) in (await self.conn.execute(_CLEAR_INDEX, {"pks": pks})).all()}

    async def _insert_batches(self, batches: list[tuple[Table, list[dict[str, Any]]]]) -> None:
        # History and index rows of a flush in one round trip instead of one per table.
        if len(batches) < 2:
            await super()._insert_batches(batches)
            return
        parts = tuple((table, _columns(table, rows)) for table, rows in batches)
        statement = _insert_all_sql(parts)
        if statement is None:
            await super()._insert_batches(batches)
            return
        params: dict[str, Any] = {}
        for n, ((_, columns), (_, rows)) in enumerate(zip(parts, batches, strict=True)):
            for i, c in enumerate(columns):
                params[f"t{n}_{i}"] = [row.get(c) for row in rows]
        await self.conn.execute(statement, params)

    async def _insert_rows(self, table: Table, rows: list[dict[str, Any]]) -> None:
        columns = _columns(table, rows)
        statement = _insert_sql(table, columns)
        if statement is None:
            await super()._insert_rows(table, rows)
            return
        params = {f"c{i}": [row.get(c) for row in rows] for i, c in enumerate(columns)}
        await self.conn.execute(statement, params)


def _columns(table: Table, rows: list[dict[str, Any]]) -> tuple[str, ...]:
    """The columns of ``table`` that any of ``rows`` sets, in the table's order."""
    names: set[str] = set()
    for row in rows:
        names.update(row)
    return tuple(c.name for c in table.columns if c.name in names)


_READ_SQL = (  # rows.STORED_COLUMNS
    "SELECT pk, res_type, res_id, version, last_updated, deleted, content"
    " FROM resources WHERE res_type = $1 AND res_id = $2"
)


# Chained searches and _has nest into ~10 relations (the SAS SOS query: 10). PostgreSQL's
# default collapse limit (8) plans them in pieces and then reads every Slot's index rows;
# 12 lets it see them whole, and geqo_threshold above it keeps planning exhaustive.
_PLANNER = {"join_collapse_limit": "12", "from_collapse_limit": "12", "geqo_threshold": "13"}

# SQLSTATEs after which the same request can succeed: the statement ran past
# statement_timeout (query_canceled); a lock could not be had, a deadlock or a serialization
# failure aborted the transaction.
_CANCELLED = "57014"
_RETRY = {
    "55P03": "a database lock could not be had",
    "40P01": "the transaction met another in a deadlock",
    "40001": "the transaction conflicted with another",
}


class PostgresStore(SqlStore):
    dialect = "postgresql"
    read_session_class = PostgresReadSession
    write_session_class = PostgresWriteSession

    def __init__(
        self,
        url: str,
        pool_size: int = 10,
        *,
        pool_timeout: float = 30.0,
        statement_timeout_ms: int = 0,
        policy: Policy | None = None,
    ) -> None:
        settings = dict(_PLANNER)
        if statement_timeout_ms:
            settings["statement_timeout"] = str(statement_timeout_ms)
        engine = create_async_engine(
            url,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_timeout=pool_timeout,
            connect_args={"server_settings": settings},
        )
        # Reads share the pool but skip BEGIN/ROLLBACK: one round trip per query.
        super().__init__(
            engine,
            engine.execution_options(isolation_level="AUTOCOMMIT"),
            pool_timeout=pool_timeout,
            statement_timeout_ms=statement_timeout_ms,
            policy=policy,
        )

    def transient(self, exc: Exception) -> FhirError | None:
        error = super().transient(exc)
        # asyncpg's own exceptions (statements sent to it directly) or SQLAlchemy's wrapper
        orig = exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc
        state = getattr(orig, "sqlstate", None)
        if error is None and state == _CANCELLED and self.statement_timeout_ms:
            error = self.statement_timed_out()
        elif error is None and state in _RETRY:
            error = busy(f"{_RETRY[state]}; nothing was changed; retry later")
        return error

    async def read(self, res_type: str, res_id: str, caller: Caller = SYSTEM) -> Stored | None:
        fast = self._fast(caller, res_type)
        if fast is False:
            return None
        if fast is None:
            return await super().read(res_type, res_id, caller)
        # The hottest path: asyncpg's prepared-statement cache directly, in autocommit.
        with self.translating():
            async with self.read_engine.connect() as conn:
                raw = await conn.get_raw_connection()
                driver: Any = raw.driver_connection
                row = await driver.fetchrow(_READ_SQL, res_type, res_id)
        return None if row is None else stored_from_row(row)
