"""Schema migrations on both databases: an empty database, one at the previous revision (with rows), and
one made before migrations existed all end at the newest revision, matching the tables the code uses."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from connector.store import StateStore, schema
from connector.store.tables import metadata
from tests.databases import state_database


@pytest.fixture(params=["sqlite", "postgresql"])
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with state_database(request.param, tmp_path) as database_url:
        yield database_url


@pytest.fixture
async def engine(url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on the empty database, with no migration run."""
    opened = create_async_engine(url)
    yield opened
    await opened.dispose()


async def _differences(engine: AsyncEngine) -> list[Any]:
    async with engine.connect() as conn:
        return await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(c), metadata))


async def _at_first_revision_with_rows(engine: AsyncEngine) -> None:
    await schema.upgrade(engine, schema.FIRST_REVISION)
    now = dt.datetime(2024, 5, 6, tzinfo=dt.UTC)
    async with engine.begin() as conn:
        await conn.execute(text(
            "INSERT INTO dossier_ledger (dossier_no, last_version, record_hash, exists_on_portal, last_event_id, "
            "updated_at) VALUES ('000.00.01.G12-240506-0001', 4, :hash, true, 'e-4', :now)"),
            {"hash": "a" * 64, "now": now})
        await conn.execute(text(
            'INSERT INTO sync_failures (topic, "partition", "offset", dossier_no, record_headers, error_class, '
            "error_kind, reason, message, attempts, first_failed_at, last_failed_at, state) VALUES "
            "('dossier.events', 0, 7, '000.00.01.G12-240506-0002', '[]', 'MappingError', 'invalid', "
            "'unmapped_procedure', 'not mapped', 1, :now, :now, 'open')"), {"now": now})


async def test_an_empty_database_is_brought_to_the_newest_revision(url: str) -> None:
    store = await StateStore.open(url)
    try:
        assert await schema.current_revision(store.engine) == schema.head_revision()
        assert await _differences(store.engine) == []
    finally:
        await store.close()


async def test_a_database_at_the_previous_revision_keeps_its_rows(url: str, engine: AsyncEngine) -> None:
    await _at_first_revision_with_rows(engine)
    assert await schema.current_revision(engine) == "0001"
    before, after = await schema.upgrade(engine)
    assert (before, after) == ("0001", schema.head_revision())
    assert await _differences(engine) == []
    store = await StateStore.open(url)
    try:
        entry = await store.get("000.00.01.G12-240506-0001")
        assert entry is not None and entry.last_version == 4
        [failure] = await store.failures()
        assert (failure["reason"], failure["event_version"], failure["state_reason"]) == ("unmapped_procedure",
                                                                                           None, None)
    finally:
        await store.close()


async def test_a_database_made_before_migrations_is_stamped_then_upgraded(engine: AsyncEngine) -> None:
    await _at_first_revision_with_rows(engine)
    async with engine.begin() as conn:  # what create_all left before migrations existed
        await conn.execute(text("DROP TABLE alembic_version"))
    assert await schema.current_revision(engine) is None
    assert await schema.upgrade(engine) == ("0001", schema.head_revision())
    assert await _differences(engine) == []


async def test_upgrading_a_current_database_changes_nothing(engine: AsyncEngine) -> None:
    head = schema.head_revision()
    assert await schema.upgrade(engine) == (None, head)
    assert await schema.upgrade(engine) == (head, head)


def test_the_head_revision_constant_names_the_newest_migration() -> None:
    assert schema.head_revision() == schema.HEAD_REVISION


def test_opening_a_new_or_current_store_leaves_the_migration_machinery_unloaded(tmp_path: Path) -> None:
    # Alembic (about 10 MiB) stays out of a daemon that starts on a new or a current database.
    url = f"sqlite+aiosqlite:///{tmp_path / 'state.db'}"
    program = (
        "import asyncio, sys\n"
        "from connector.store import StateStore\n"
        "async def main():\n"
        "    store = await StateStore.open(sys.argv[1])\n"
        "    await store.close()\n"
        "    print('alembic' in sys.modules)\n"
        "asyncio.run(main())\n"
    )
    ran = [subprocess.run([sys.executable, "-c", program, url], capture_output=True, text=True, timeout=120,
                          check=True).stdout.split()[-1] for _ in range(2)]
    assert ran == ["False", "False"]  # the first opening creates the tables at the newest revision
