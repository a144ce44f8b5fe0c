"""Schema migrations: bring a state-store database to the newest revision, at start and on demand
(``portal-sync db upgrade``).

A database made before migrations existed (its tables there, no revision recorded) is stamped at the
first revision, which describes exactly that schema, then upgraded like any other. On PostgreSQL an
advisory lock lets only one of several instances starting together migrate; the others wait and then
find nothing to do.

Alembic is imported only when an existing database is behind: it adds about 10 MiB to the process. A
database at ``HEAD_REVISION`` needs nothing, and a new one is created at it directly (and stamped).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Column, MetaData, PrimaryKeyConstraint, String, Table, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from connector.store.tables import metadata

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
FIRST_REVISION = "0001"
HEAD_REVISION = "0006"  # the newest in migrations/versions; a test holds the two together
# Any fixed number; it names this service's lock among other users of the database.
_MIGRATION_LOCK = 0x706F7274616C  # "portal"


def _config(connection: Connection) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision among the migration scripts (``HEAD_REVISION`` must name it)."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    if head is None:  # pragma: no cover - the package ships its revisions
        raise RuntimeError("no schema revisions found")
    return head


def _current(connection: Connection) -> str | None:
    # What Alembic's MigrationContext.get_current_revision reads, without loading Alembic.
    if not inspect(connection).has_table("alembic_version"):
        return None
    version: str | None = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    return version


# Alembic's own record of the revision, made without Alembic for a database created at the newest one.
_alembic_version = Table("alembic_version", MetaData(),
                         Column("version_num", String(32), nullable=False),
                         PrimaryKeyConstraint("version_num", name="alembic_version_pkc"))


def _upgrade(connection: Connection, target: str) -> tuple[str | None, str | None]:
    if target == "head" and _current(connection) == HEAD_REVISION:
        return HEAD_REVISION, HEAD_REVISION
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
    before = _current(connection)
    existing = set(inspect(connection).get_table_names())
    if target == "head" and before is None and not existing & set(metadata.tables):
        # A new database: the tables as they stand at the newest revision, stamped so. The migrations
        # produce the same schema (tests compare them); only older databases need them run.
        metadata.create_all(connection)
        _alembic_version.create(connection)
        connection.execute(_alembic_version.insert().values(version_num=HEAD_REVISION))
        return None, HEAD_REVISION
    from alembic import command

    config = _config(connection)
    if before is None and "dossier_ledger" in existing:
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
