"""Databases for state-store tests: a fresh PostgreSQL database per test (CI must have PostgreSQL; a
developer without one gets the SQLite half only)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

POSTGRES_ADMIN_URL = os.environ.get("PORTAL_SYNC_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


async def postgres_database() -> tuple[str, str] | None:
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


async def postgres_database_or_skip() -> tuple[str, str]:
    """A fresh database, or skip the test locally (fail it in CI) when no PostgreSQL answers."""
    database = await postgres_database()
    if database is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required in CI and did not answer at {POSTGRES_ADMIN_URL}")
        pytest.skip(f"no PostgreSQL at {POSTGRES_ADMIN_URL}")
    return database


async def drop_postgres_database(name: str) -> None:
    import asyncpg

    conn = await asyncio.wait_for(asyncpg.connect(POSTGRES_ADMIN_URL), timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def state_database(kind: str, directory: Path) -> AsyncIterator[str]:
    """The URL of an empty state-store database of ``kind`` ("sqlite" or "postgresql"), dropped after."""
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{directory / 'state.db'}"
        return
    name, url = await postgres_database_or_skip()
    try:
        yield url
    finally:
        await drop_postgres_database(name)
