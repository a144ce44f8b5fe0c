"""The audit trail of adapter calls on both databases: a row per call, found by any dossier it named, no
request body kept,
pruned after the retention period, and a bounded buffer that drops (and counts) rather than grows."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from connector.observability import Metrics
from connector.portal import audit
from connector.portal.audit import AuditTrail
from connector.portal.client import CallRecord
from connector.store import StateStore
from tests.databases import state_database


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StateStore]:
    async with state_database(request.param, tmp_path) as url:
        opened = await StateStore.open(url)
        yield opened
        await opened.close()


def call(at: datetime, service: str = "DongBoHoSoMC", dossiers: tuple[str, ...] = ("A-1", "A-2"),
         result: str = "ok") -> CallRecord:
    return CallRecord(at, service, dossiers, len(dossiers), "f" * 64 if dossiers else "", result, 0.012)


def dropped(metrics: Metrics) -> float:
    return metrics.registry.get_sample_value("portal_sync_audit_rows_dropped_total") or 0.0


async def test_each_call_gets_a_row_found_by_any_dossier_it_named(store: StateStore) -> None:
    trail = AuditTrail(store, Metrics(), retention_days=30)
    now = datetime.now(UTC)
    trail.record(call(now))
    trail.record(call(now, service="login", dossiers=()))
    trail.record(call(now, service="CapNhatTienDoHoSoMC", dossiers=("A-2",), result="x" * 300))
    trail.record(call(now, dossiers=("A%2", "A_1")))  # LIKE's wildcards in a dossier number match only themselves
    await trail.flush()
    rows = await store.portal_calls()
    assert sorted((r["service"], tuple(r["dossiers"]), r["dossier_no"]) for r in rows) == [
        ("CapNhatTienDoHoSoMC", ("A-2",), "A-2"), ("DongBoHoSoMC", ("A%2", "A_1"), None),
        ("DongBoHoSoMC", ("A-1", "A-2"), None), ("login", (), None)]
    step, push = await store.portal_calls(dossier_no="A-2")
    assert step["service"] == "CapNhatTienDoHoSoMC" and step["result"] == "x" * 100  # fit to its column
    assert push["service"] == "DongBoHoSoMC" and push["records"] == 2
    assert [r["dossiers"] for r in await store.portal_calls(dossier_no="A-1")] == [["A-1", "A-2"]]
    assert [r["dossiers"] for r in await store.portal_calls(dossier_no="A_1")] == [["A%2", "A_1"]]
    assert await store.portal_calls(dossier_no="A") == []
    assert {r["request_sha256"] for r in rows if r["service"] == "login"} == {""}


async def test_rows_older_than_the_retention_are_pruned(store: StateStore) -> None:
    trail = AuditTrail(store, Metrics(), retention_days=30)
    now = datetime.now(UTC)
    trail.record(call(now - timedelta(days=31), dossiers=("OLD-1",)))
    trail.record(call(now - timedelta(days=29), dossiers=("KEPT-1",)))
    await trail.flush()
    assert await trail.prune(now) == 1
    assert [r["dossiers"] for r in await store.portal_calls()] == [["KEPT-1"]]


async def test_a_full_buffer_drops_the_oldest_rows_and_counts_them(store: StateStore) -> None:
    metrics = Metrics()
    trail = AuditTrail(store, metrics, retention_days=30, max_waiting=3)
    now = datetime.now(UTC)
    for i in range(5):
        trail.record(call(now, dossiers=(f"D-{i}",)))
    assert dropped(metrics) == 2
    await trail.flush()
    assert sorted(r["dossier_no"] for r in await store.portal_calls()) == ["D-2", "D-3", "D-4"]


async def test_rows_the_store_refuses_are_dropped_and_counted_not_retried_for_ever(tmp_path: Path) -> None:
    metrics = Metrics()
    store = await StateStore.open(f"sqlite+aiosqlite:///{tmp_path / 'state.db'}")
    try:
        trail = AuditTrail(store, metrics, retention_days=30)
        trail.record(call(datetime.now(UTC)))
        async with store.engine.begin() as conn:  # every write of the trail now fails
            await conn.execute(text("DROP TABLE portal_calls"))
        await trail.flush()
    finally:
        await store.close()
    assert dropped(metrics) == 1


class HungStore:
    """A state store that never answers a write."""

    async def record_portal_calls(self, rows: object) -> None:
        await asyncio.Event().wait()


async def test_rows_a_hung_store_never_takes_are_counted_when_the_trail_closes(monkeypatch) -> None:
    monkeypatch.setattr(audit, "CLOSE_SECONDS", 0.05)
    metrics = Metrics()
    trail = AuditTrail(HungStore(), metrics, retention_days=30, max_waiting=10)  # type: ignore[arg-type]
    for i in range(3):
        trail.record(call(datetime.now(UTC), dossiers=(f"D-{i}",)))
    await trail.close()
    assert dropped(metrics) == 3  # the one batch on its way, and none left unaccounted
