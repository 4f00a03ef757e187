"""Column types whose values read back the same on every engine.

``UtcDateTime`` is the schema's one timestamp type: every instant the server stores is UTC,
and every datetime read from a column of this type is aware, in UTC, on both engines.
PostgreSQL (``timestamp with time zone``) does that by itself. SQLite has no time type:
SQLAlchemy writes the wall time as text without an offset (``2026-06-12 14:20:00.000000``)
and reads it back naive, so this type writes UTC and reads the text back as UTC. Nothing
above storage has to fix naive datetimes.

The DDL is ``DateTime(timezone=True)``'s, as the migrations create it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

_from_iso = datetime.fromisoformat


def utc_from_sqlite(text: str) -> datetime:
    """The aware UTC instant of a SQLite timestamp written by SQLAlchemy (no offset).

    Parsing the text with the offset appended is four times cheaper than parsing it naive
    and then ``replace(tzinfo=UTC)``: the availability cache reads millions of these."""
    try:
        return _from_iso(text + "+00:00")
    except ValueError:  # written with an offset by another tool: honour it
        return _from_iso(text).astimezone(UTC)


def _sqlite_result(value: str | None) -> datetime | None:
    return None if value is None else utc_from_sqlite(value)


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp read back aware in UTC (see the module docstring)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        store = self.impl_instance.bind_processor(dialect)
        if dialect.name != "sqlite" or store is None:
            return store
        to_text = store

        def in_utc(value: Any) -> Any:
            # SQLite's processor writes the wall time and drops the offset: make it UTC's.
            if isinstance(value, datetime) and value.tzinfo is not None and value.utcoffset():
                value = value.astimezone(UTC)
            return to_text(value)

        return in_utc

    def result_processor(self, dialect: Dialect, coltype: object) -> Callable[[Any], Any] | None:
        if dialect.name == "sqlite":
            return _sqlite_result
        return self.impl_instance.result_processor(dialect, coltype)
