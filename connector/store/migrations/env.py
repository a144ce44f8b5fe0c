"""Alembic's entry point: always given an open connection by ``connector.store.schema``."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from connector.store.tables import metadata

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):  # pragma: no cover - only ever run through connector.store.schema
    raise RuntimeError("run migrations with `portal-sync db upgrade`, which supplies the connection")

# Batch mode: SQLite cannot ALTER most things in place; Alembic copies the table where it must. The
# caller's transaction holds every revision: a failed upgrade leaves the database as it was.
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
