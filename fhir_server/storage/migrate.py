"""Apply the Alembic migrations to a connection (``fhir-server migrate``, SQLite on serve),
and tell where a database's schema stands against them (``serve`` on PostgreSQL)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def upgrade(connection: Connection) -> None:
    """Bring the schema to the newest revision (runs inside the caller's transaction)."""
    command.upgrade(alembic_config(connection), "head")


@dataclass(frozen=True)
class SchemaState:
    """The database's Alembic revision against this code's newest one (``head``).

    ``status``: ``current`` (at head), ``missing`` (no revision: never migrated), ``behind``
    (an older revision of this code: ``migrate`` upgrades it), ``ahead`` (a revision this
    code does not know: written by a newer version of the server)."""

    status: Literal["current", "missing", "behind", "ahead"]
    revision: str | None
    head: str

    @property
    def current(self) -> bool:
        return self.status == "current"


def schema_state(connection: Connection) -> SchemaState:
    scripts = ScriptDirectory.from_config(alembic_config())
    head = scripts.get_current_head()
    assert head is not None  # the package ships its migrations
    revisions = MigrationContext.configure(connection).get_current_heads()
    revision = revisions[0] if len(revisions) == 1 else None
    if not revisions:
        return SchemaState("missing", None, head)
    if revisions == (head,):
        return SchemaState("current", head, head)
    known = {script.revision for script in scripts.walk_revisions()}
    if any(r not in known for r in revisions):
        return SchemaState("ahead", ", ".join(revisions), head)
    return SchemaState("behind", revision or ", ".join(revisions), head)
