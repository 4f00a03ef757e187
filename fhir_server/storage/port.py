"""The storage port: the only database API the rest of the server sees.

One adapter per engine implements it (``sqlite.py``, ``postgres.py``, sharing ``_sql.py``).
Search compiles its queries with SQLAlchemy Core against ``schema`` and runs them through
``fetch``; everything else goes through the documented methods below.

Who is asking. Every read and write carries a ``Caller`` (``core/caller.py``): ``read``,
``vread``, ``history`` take it, ``reading`` and ``writing`` give it to their session
(``session.caller``). The adapter has one place that decides which rows a caller may see,
``visible(caller, rows)`` (``SqlStore.visible``): a where-clause on ``resources`` or
``history``, None for "every row", made from the access policy's ``ReadScope``
(``auth/policy.py``, ``storage/access.py``; ``session.scope`` for code that filters rows it
cached, the availability cache). The store's own selects (``read``, ``vread``,
``history``, ``scan``) add it; statements that search builds add ``session.visible(table)``
where they select resources. A write session's ``current`` reads every row, with its
``owner``, ``labels`` and ``party``: the interactions refuse (403) a change of another's resource
instead of mistaking it for a free id. Without a caller, the methods act for ``SYSTEM``,
the server's own work (preload, reindex, load), which sees every row and owns nothing.

Schema. ``schema_state`` says whether the database holds the schema of this code's newest
migration (``migrate.SchemaState``); ``migrate`` brings it there.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from sqlalchemy import ColumnElement, Table
from sqlalchemy.sql import Executable, FromClause

from auth.policy import Policy, ReadScope
from fhir_server.core.caller import SYSTEM, Caller

if TYPE_CHECKING:
    from fhir_server.storage.migrate import SchemaState

# Index rows by index kind ("token", "string", ...): each row is the columns of that
# table except ``res_pk`` and ``res_type`` (which the store fills in).
IndexRows = dict[str, list[dict[str, Any]]]


class Stored(NamedTuple):
    """One version of a resource as stored. ``content`` is the JSON served back as is.

    A named tuple (immutable like a frozen dataclass, five times cheaper to build): a SAS
    search answer builds ~150 of them."""

    res_type: str
    res_id: str
    version: int
    last_updated: datetime
    deleted: bool
    content: bytes
    method: str = ""
    pk: int | None = None
    # Who wrote it first (the access policy's owner; None: the server) and a Slot's
    # TRE-R314 labels (``auth.policy.slot_labels``): set by writes, read back by
    # ``WriteSession.current`` (what a write checks), not by plain reads.
    owner: str | None = None
    labels: str | None = None
    # An Appointment's second reader: the owner of the slot(s) it books (the slot's vendor
    # reads it and records what happens at the practice); None for other types.
    party: str | None = None


class KeyRecord(NamedTuple):
    """What an ``Idempotency-Key`` was first used for (``idempotency_keys``)."""

    request_hash: str
    status: int
    res_type: str | None
    res_id: str | None
    version: int | None
    created: datetime


@dataclass(frozen=True, slots=True)
class HistoryPage:
    entries: list[Stored]
    total: int


class ReadSession(Protocol):
    dialect: str  # "sqlite" or "postgresql": a statement may use what its engine does best
    caller: Caller  # who the session reads (or writes) for
    scope: ReadScope  # what the policy lets ``caller`` see (``visible`` is its SQL)

    def visible(self, rows: FromClause) -> ColumnElement[bool] | None:
        """The condition limiting ``rows`` (``resources`` or ``history``, or an alias) to
        what ``caller`` may see; None: every row (see the module docstring)."""
        ...

    async def fetch(
        self, statement: Executable, params: Mapping[str, Any] | None = None
    ) -> Sequence[Any]:
        """Run a read-only statement built by the search planner (``params``: the values
        of its bind parameters, for a statement built once and run many times)."""
        ...


class WriteSession(ReadSession, Protocol):
    """One database transaction: everything in it commits together or not at all."""

    async def current(self, res_type: str, res_id: str) -> Stored | None:
        """The current version, locked until the end of the transaction where supported."""
        ...

    async def prefetch(self, keys: Sequence[tuple[str, str]]) -> None:
        """Read the current versions of these (type, id) at once, locked as ``current`` locks
        them: ``current`` then answers them without a query until they are written (bulk
        loads: one statement per few hundred resources instead of one each)."""
        ...

    async def deleted_flags(self, keys: Collection[tuple[str, str]]) -> dict[tuple[str, str], bool]:
        """``deleted`` of each (type, id) of ``keys`` that has a current row, this session's
        writes included; keys never stored are absent (referential integrity: one statement
        per thousand keys)."""
        ...

    async def lock_conditional(self, res_type: str) -> None:
        """Serialize conditional create/update on a type (two racing creates make one)."""
        ...

    async def put(self, stored: Stored, index: IndexRows, previous: Stored | None) -> None:
        """Write a new version (create, update or delete) and replace its index rows.

        Adapters may buffer the rows until the session's next query or its commit (reads of
        this session always see them). A create whose id the client chose (``method`` other
        than POST) raises ``Conflict`` here if that id was created concurrently, so that
        update-as-create can update it instead; other conflicts may surface at commit."""
        ...

    def savepoint(self) -> AbstractAsyncContextManager[None]:
        """A part of the transaction that an exception undoes alone: what was written inside
        is rolled back (and forgotten by the session), the rest of the transaction goes on.
        Its writes are flushed before it ends, so their conflicts are raised inside it.
        (Ingestion writes several practitioners per transaction, each in a savepoint.)"""
        ...

    async def scan(self, res_type: str | None, after_pk: int, limit: int) -> list[Stored]:
        """Current, non-deleted resources with ``pk > after_pk``, in ``pk`` order, at most
        ``limit``; locked until the end of the transaction where supported (reindexing reads
        a batch and rewrites its index without racing an update of the same resources)."""
        ...

    async def replace_index(self, pk: int, res_type: str, index: IndexRows) -> None:
        """Replace the index rows of a stored resource; the resource itself is unchanged."""
        ...

    async def execute(
        self,
        statement: Executable,
        params: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    ) -> int:
        """Run a write statement of a part of the server that keeps its own table beside
        the resources (the delivery outbox, ``delivery/queue.py``) in this transaction: it
        commits with the versions written, or not at all (undone with a savepoint too).
        ``params``: the values of its bind parameters (one mapping, or one per row: a
        statement built once). The number of rows it changed."""
        ...

    def insert_later(self, table: Table, row: Mapping[str, Any]) -> None:
        """Insert ``row`` into ``table`` (a table of another part of the server, such as the
        delivery outbox) with this session's buffered rows: at its next flush, before its
        commit, in the same statement as the versions' history and index rows where the
        engine can (PostgreSQL): no round trip of its own. Undone with a savepoint too."""
        ...

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the transaction has committed (never if it rolls back):
        a writer wakes what waits for its rows (the local delivery sender)."""
        ...

    async def claim_key(
        self, client_id: str, key: str, request_hash: str, now: datetime, expired: datetime
    ) -> KeyRecord | None:
        """Claim an ``Idempotency-Key`` for this transaction: None when it is new (or its
        record was created before ``expired``), otherwise its committed record. A
        concurrent transaction claiming the same key waits for this one (PostgreSQL: on
        the primary key; SQLite: writers are serial), then reads what it recorded; if this
        one rolls back, the other claims the key."""
        ...

    async def record_key(self, client_id: str, key: str, status: int, stored: Stored) -> None:
        """Record the result of the key claimed in this transaction."""
        ...


class Store(Protocol):
    dialect: str
    policy: Policy  # the access policy its ``visible`` applies (``auth/policy.py``)

    async def read(self, res_type: str, res_id: str, caller: Caller = SYSTEM) -> Stored | None: ...

    async def vread(
        self, res_type: str, res_id: str, version: int, caller: Caller = SYSTEM
    ) -> Stored | None: ...

    async def history(
        self,
        *,
        res_type: str | None,
        res_id: str | None,
        since: datetime | None,
        at: datetime | None,
        count: int,
        offset: int,
        caller: Caller = SYSTEM,
    ) -> HistoryPage: ...

    def reading(self, caller: Caller = SYSTEM) -> AbstractAsyncContextManager[ReadSession]: ...

    def writing(self, caller: Caller = SYSTEM) -> AbstractAsyncContextManager[WriteSession]: ...

    async def schema_state(self) -> SchemaState:
        """Where the database's schema stands against this code's migrations."""
        ...

    async def migrate(self) -> None: ...

    async def optimize(self) -> None:
        """After bulk writes (``load``, ``reindex``): bring the query planner's statistics
        up to date where the engine does not do it by itself (SQLite)."""
        ...

    async def close(self) -> None: ...
