"""The sync ledger on both supported databases: SQLite (default) and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator

import pytest

from connector.store import StateStore

POSTGRES_ADMIN_URL = os.environ.get("PORTAL_SYNC_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


async def _postgres_database() -> tuple[str, str] | None:
    """A fresh database for one test, or None when no PostgreSQL answers (CI must have one)."""
    import asyncpg

    try:
        conn = await asyncio.wait_for(asyncpg.connect(POSTGRES_ADMIN_URL), timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return None
    name = f"portal_sync_test_{uuid.uuid4().hex[:12]}"
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return name, f"{base}/{name}"


async def _drop(name: str) -> None:
    import asyncpg

    conn = await asyncio.wait_for(asyncpg.connect(POSTGRES_ADMIN_URL), timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[StateStore]:
    if request.param == "sqlite":
        opened = await StateStore.open(f"sqlite+aiosqlite:///{tmp_path / 'var' / 'state.db'}")
        yield opened
        await opened.close()
        return
    database = await _postgres_database()
    if database is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required in CI and did not answer at {POSTGRES_ADMIN_URL}")
        pytest.skip(f"no PostgreSQL at {POSTGRES_ADMIN_URL}")
    name, url = database
    opened = await StateStore.open(url)
    yield opened
    await opened.close()
    await _drop(name)


async def test_an_unknown_dossier_has_no_entry(store: StateStore) -> None:
    assert await store.get("000.00.01.G12-201005-0001") is None


async def test_a_synced_version_is_remembered(store: StateStore) -> None:
    await store.record_synced("000.00.01.G12-201005-0001", 3, "a" * 64, str(uuid.uuid4()))
    entry = await store.get("000.00.01.G12-201005-0001")
    assert entry is not None
    assert (entry.last_version, entry.record_hash, entry.exists_on_portal) == (3, "a" * 64, True)


async def test_the_ledger_never_moves_a_dossier_backwards(store: StateStore) -> None:
    no = "000.00.01.G12-201005-0002"
    await store.record_synced(no, 5, "5" * 64, str(uuid.uuid4()))
    await store.record_synced(no, 4, "4" * 64, str(uuid.uuid4()))
    entry = await store.get(no)
    assert entry is not None and (entry.last_version, entry.record_hash) == (5, "5" * 64)
    await store.record_synced(no, 6, "6" * 64, str(uuid.uuid4()))
    entry = await store.get(no)
    assert entry is not None and entry.last_version == 6


async def test_concurrent_writers_leave_the_newest_version(store: StateStore) -> None:
    no = "000.00.01.G12-201005-0003"
    versions = list(range(1, 41))
    await asyncio.gather(*(store.record_synced(no, v, f"{v:064d}", str(uuid.uuid4())) for v in reversed(versions)))
    entry = await store.get(no)
    assert entry is not None and entry.last_version == 40


async def test_a_sqlite_store_survives_reopening(tmp_path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'state.db'}"
    first = await StateStore.open(url)
    await first.record_synced("000.00.01.G12-201005-0004", 2, "b" * 64, str(uuid.uuid4()))
    await first.close()
    second = await StateStore.open(url)
    entry = await second.get("000.00.01.G12-201005-0004")
    await second.close()
    assert entry is not None and entry.last_version == 2


async def test_many_entries_are_read_and_written_at_once(store: StateStore) -> None:
    from connector.store import Synced

    await store.record_synced_many([Synced(f"000.00.01.G12-201005-{n:04d}", n, f"{n:064d}", str(uuid.uuid4()))
                                    for n in range(1, 51)])
    await store.record_synced_many([Synced("000.00.01.G12-201005-0007", 3, "3" * 64, str(uuid.uuid4())),
                                    Synced("000.00.01.G12-201005-0008", 9, "9" * 64, str(uuid.uuid4()))])
    entries = await store.get_many([f"000.00.01.G12-201005-{n:04d}" for n in range(1, 60)])
    assert len(entries) == 50
    assert entries["000.00.01.G12-201005-0007"].last_version == 7  # never backwards
    assert entries["000.00.01.G12-201005-0008"].last_version == 9


async def test_instances_opening_a_new_postgresql_store_together_do_not_trip_over_each_other() -> None:
    database = await _postgres_database()
    if database is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required in CI and did not answer at {POSTGRES_ADMIN_URL}")
        pytest.skip(f"no PostgreSQL at {POSTGRES_ADMIN_URL}")
    name, url = database
    try:
        stores = await asyncio.gather(*(StateStore.open(url) for _ in range(4)))
        for opened in stores:
            assert await opened.get("000.00.01.G12-201005-0001") is None
            await opened.close()
    finally:
        await _drop(name)
