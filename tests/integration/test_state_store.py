"""The state store (sync ledger and failures) on both supported databases: SQLite (default) and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from connector.store import Failure, FailureFilter, StateStore
from tests.databases import drop_postgres_database, postgres_database_or_skip


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[StateStore]:
    if request.param == "sqlite":
        opened = await StateStore.open(f"sqlite+aiosqlite:///{tmp_path / 'var' / 'state.db'}")
        yield opened
        await opened.close()
        return
    name, url = await postgres_database_or_skip()
    opened = await StateStore.open(url)
    yield opened
    await opened.close()
    await drop_postgres_database(name)


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
    name, url = await postgres_database_or_skip()
    try:
        stores = await asyncio.gather(*(StateStore.open(url) for _ in range(4)))
        for opened in stores:
            assert await opened.get("000.00.01.G12-201005-0001") is None
            await opened.close()
    finally:
        await drop_postgres_database(name)


def _failure(offset: int, *, reason: str = "portal_rejected", attempts: int = 1, value: bytes = b'{"v":1}') -> Failure:
    return Failure(
        topic="dossier.events", partition=2, offset=offset, key=b"000.00.01.G12-201005-0009", value=value,
        headers=[("source", b"one-stop"), ("bin", bytes([0, 255]))], dossier_no="000.00.01.G12-201005-0009",
        event_id=str(uuid.uuid4()), service="DongBoHoSoMC", mapped_payload={"MaHoSo": "000.00.01.G12-201005-0009"},
        error_class="PortalRejected", error_kind="permanent", reason=reason, field="MaTTHC",
        message="Mã thủ tục không tồn tại", attempts=attempts,
    )


async def test_a_failure_is_kept_whole_for_replay(store: StateStore) -> None:
    await store.record_failures([_failure(41)])
    [row] = await store.failures()
    assert (row["topic"], row["partition"], row["offset"]) == ("dossier.events", 2, 41)
    assert row["record_key"] == b"000.00.01.G12-201005-0009" and row["record_value"] == b'{"v":1}'
    assert row["record_headers"] == [["source", "one-stop"], ["bin", "\x00\xff"]]
    assert row["mapped_payload"] == {"MaHoSo": "000.00.01.G12-201005-0009"}
    assert (row["error_class"], row["error_kind"], row["reason"], row["field"]) == (
        "PortalRejected", "permanent", "portal_rejected", "MaTTHC")
    assert row["message"] == "Mã thủ tục không tồn tại" and row["attempts"] == 1 and row["state"] == "open"


async def test_an_empty_id_list_selects_no_failure_and_no_list_selects_any(store: StateStore) -> None:
    await store.record_failures([_failure(41), _failure(42)])
    assert await store.list_failures(FailureFilter(ids=[])) == []
    assert len(await store.list_failures(FailureFilter(ids=None))) == 2
    [first] = await store.list_failures(FailureFilter(), limit=1)
    assert [r["id"] for r in await store.list_failures(FailureFilter(ids=[first["id"]]))] == [first["id"]]


async def test_a_record_failing_again_stays_one_row_with_the_newest_error(store: StateStore) -> None:
    await store.record_failures([_failure(7, attempts=3)])
    await store.record_failures([_failure(7, reason="deadline_exceeded", attempts=5), _failure(8)])
    rows = await store.failures()
    assert [(r["offset"], r["reason"], r["attempts"]) for r in rows] == [(7, "deadline_exceeded", 8),
                                                                         (8, "portal_rejected", 1)]
    assert rows[0]["last_failed_at"] >= rows[0]["first_failed_at"]


async def test_one_record_twice_in_a_batch_is_one_row(store: StateStore) -> None:
    await store.record_failures([_failure(9, reason="first"), _failure(9, reason="second")])
    assert [(r["offset"], r["reason"]) for r in await store.failures(state=None)] == [(9, "second")]


async def test_hostile_text_and_valueless_headers_are_stored_not_retried_for_ever(store: StateStore) -> None:
    hostile = Failure(
        topic="dossier.events", partition=0, offset=3, key=b"K\x00", value=b"\x00", headers=[("trace", None)],
        dossier_no="K\x00" + "x" * 200, event_id=None, service=None, mapped_payload=None,
        error_class="PortalRejected", error_kind="permanent", reason="portal_rejected", field="a." * 300,
        message="Lỗi\x00 từ cổng", attempts=1,
    )
    await store.record_failures([hostile])
    [row] = await store.failures()
    assert row["record_headers"] == [["trace", None]] and row["record_value"] == b"\x00"
    assert row["message"] == "Lỗi\ufffd từ cổng" and len(row["dossier_no"]) == 100 and len(row["field"]) == 255
    assert row["mapped_payload"] is None
