"""Alembic environment: always run on a connection handed over by ``migrate.upgrade``."""

from __future__ import annotations

from alembic import context

from fhir_server.storage.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise SystemExit("run migrations with `fhir-server migrate`, not the alembic command")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
