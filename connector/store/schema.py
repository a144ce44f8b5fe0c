"""Schema migrations: bring a state-store database to the newest revision, at start and on demand
(``portal-sync db upgrade``).

A database made before migrations existed (its tables there, no revision recorded) is stamped at the
first revision, which describes exactly that schema, then upgraded like any other. On PostgreSQL an
advisory lock lets only one of several instances starting together migrate; the others wait and then
find nothing to do.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
FIRST_REVISION = "0001"
# Any fixed number; it names this service's lock among other users of the database.
_MIGRATION_LOCK = 0x706F7274616C  # "portal"


def _config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    if head is None:  # pragma: no cover - the package ships its revisions
        raise RuntimeError("no schema revisions found")
    return head


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _upgrade(connection: Connection, target: str) -> tuple[str | None, str | None]:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
    before = _current(connection)
    config = _config(connection)
    if before is None and inspect(connection).has_table("dossier_ledger"):
        command.stamp(config, FIRST_REVISION)  # made before migrations: it holds the first revision
        before = FIRST_REVISION
    command.upgrade(config, target)
    return before, _current(connection)


async def upgrade(engine: AsyncEngine, target: str = "head") -> tuple[str | None, str | None]:
    """Migrate to ``target``; return the revision before and after."""
    async with engine.begin() as conn:
        return await conn.run_sync(_upgrade, target)


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(_current)
