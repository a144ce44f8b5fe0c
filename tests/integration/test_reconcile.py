"""Backfill and reconcile: the portal re-aligned with the ledger's newest state of each dossier.

The daemon syncs a sample stream (in-process, real broker and simulator, the ledger on SQLite or
PostgreSQL); then the portal loses data or is replaced, and the operator's commands run as ``portal-sync``
processes. A last test makes the daemon sync a newer version while a backfill sends an older one."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from connector.config import DEFAULT_MAPPINGS_DIR, load_settings
from connector.dev.samples import SampleMessage, generate_events
from connector.observability import Metrics
from connector.operators.reconcile import Reconciler, compare
from connector.operators.replay import open_replayer
from connector.portal.client import PortalClient
from connector.portal.gateway import PortalGateway
from connector.push.events import decode_event
from connector.push.mapping import load_mappings
from connector.push.sync import hashed_record
from connector.store import Failure, FailureFilter, LedgerFilter, StateStore, Synced
from tests.databases import state_database
from tests.integration.pipeline_harness import (
    Topics,
    clear_faults,
    daemon_config,
    expected_portal_state,
    inject_fault,
    over_both_transports,
    portal_dossiers,
    portal_stats,
    records_pushed,
    run_until_committed,
    unique_group,
    write_config,
)
from tests.integration.replay_scenario import portal_sync
from tests.kafkatools import produce

pytestmark = pytest.mark.broker

HTTP_TIMEOUT = aiohttp.ClientTimeout(total=10)
# The store-facing scenarios run on both databases; the narrower ones on SQLite alone, to keep the suite short.
SQLITE_ONLY = pytest.mark.parametrize("synced", ["sqlite"], indirect=True)


@dataclass
class Synced_:
    config: Path
    messages: list[SampleMessage]
    newest: dict[str, dict[str, Any]]  # per dossier on the portal, the newest record


@pytest.fixture(params=["sqlite", "postgresql"])
async def synced(request, topics, kafka_bootstrap, portal_url, tmp_path) -> AsyncIterator[Synced_]:
    """A sample stream synced by the daemon: the portal and the ledger agree."""
    async with state_database(request.param, tmp_path) as url:
        stream = Topics(await topics.create("dossier.events", partitions=2),
                        await topics.create("dossier.events.dlq", partitions=1), unique_group())
        config = daemon_config(kafka_bootstrap, portal_url, stream, tmp_path)
        config["state"] = {"url": url}
        config_path = write_config(tmp_path / "config.yaml", config)
        messages = generate_events(dossiers=30, seed=41, include_bad=False)
        ends = await produce(kafka_bootstrap, stream.events, messages)
        await run_until_committed(load_settings(config_path), kafka_bootstrap, stream, ends)
        newest = expected_portal_state(messages, load_mappings(DEFAULT_MAPPINGS_DIR)).records
        assert {no: d["record"] for no, d in (await portal_dossiers(portal_url)).items()} == newest
        yield Synced_(config_path, messages, newest)


async def sim(portal_url: str, method: str, path: str, body: Any = None) -> None:
    async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http, \
            http.request(method, portal_url + path, json=body) as reply:
        assert reply.status == 200, await reply.text()


async def portal_records(portal_url: str) -> dict[str, dict[str, Any]]:
    return {no: d["record"] for no, d in (await portal_dossiers(portal_url)).items()}


def events_of(messages: list[SampleMessage]) -> dict[str, Any]:
    """Per dossier, its newest event's dossier part (agency, procedure, reception time)."""
    newest: dict[str, Any] = {}
    for message in messages:
        dossier = decode_event(message.key, message.value, max_bytes=1 << 20).dossier
        if dossier.origin == "local" and dossier.version > getattr(newest.get(dossier.no), "version", 0):
            newest[dossier.no] = dossier
    return newest


@over_both_transports
async def test_backfill_fills_a_new_portal_with_the_newest_state_of_each_dossier(synced, portal_url) -> None:
    await sim(portal_url, "POST", "/_sim/reset")  # a new, empty portal environment

    code, planned = await portal_sync(synced.config, "backfill", "--all", "--dry-run")
    assert code == 0
    assert planned["total"] == len(synced.newest)
    assert {d["dossier_no"] for d in planned["dossiers"]} == set(synced.newest)
    assert await records_pushed(portal_url) == 0, "a dry run sent something"

    code, done = await portal_sync(synced.config, "backfill", "--all")
    assert code == 0
    assert done["counts"] == {"sent": len(synced.newest)}
    assert done["not_sent"] == []
    assert await portal_records(portal_url) == synced.newest
    stats = await portal_stats(portal_url)
    assert sum(stats["calls"]["DongBoHoSoMC"].values()) <= 2, "not sent in batches"


@SQLITE_ONLY
async def test_backfill_selects_by_procedure_agency_and_reception_time(synced, portal_url) -> None:
    dossiers = events_of(synced.messages)
    procedure = sorted({d.procedure_code for d in dossiers.values()})[0]
    received = sorted(d.received_at for d in dossiers.values())
    middle = received[len(received) // 2]

    await sim(portal_url, "POST", "/_sim/reset")
    code, done = await portal_sync(synced.config, "backfill", "--procedure", procedure)
    assert code == 0
    chosen = {no for no, d in dossiers.items() if d.procedure_code == procedure}
    assert set(await portal_records(portal_url)) == chosen
    assert done["counts"] == {"sent": len(chosen)}

    await sim(portal_url, "POST", "/_sim/reset")
    since = middle.astimezone(UTC).isoformat()
    await portal_sync(synced.config, "backfill", "--since", since, "--agency", "000.00.01.G12")
    chosen = {no for no, d in dossiers.items() if d.received_at >= middle and d.agency_code == "000.00.01.G12"}
    assert chosen, "the sample has no such dossier: the test would prove nothing"
    assert set(await portal_records(portal_url)) == chosen

    code, none = await portal_sync(synced.config, "backfill", "--until", "2000-01-01")
    assert (code, none["counts"]) == (0, {})


@over_both_transports
async def test_reconcile_reports_lost_and_changed_dossiers_and_fix_sends_them_again(synced, portal_url) -> None:
    numbers = sorted(synced.newest)
    lost, changed = numbers[:3], numbers[3:5]
    for no in lost:
        await sim(portal_url, "DELETE", f"/_sim/dossiers/{no}")
    for no in changed:
        status = "7" if synced.newest[no]["TrangThaiHoSo"] != "7" else "8"
        await sim(portal_url, "PATCH", f"/_sim/dossiers/{no}", {"TrangThaiHoSo": status})
    pushed = await records_pushed(portal_url)

    code, report = await portal_sync(synced.config, "reconcile", "--all")
    assert code == 3
    assert report["checked"] == len(numbers)
    assert report["counts"] == {"same": len(numbers) - 5, "missing": 3, "differs": 2}
    states = {f["dossier_no"]: f["state"] for f in report["findings"]}
    assert states == {**dict.fromkeys(lost, "missing"), **dict.fromkeys(changed, "differs")}
    differs = next(f for f in report["findings"] if f["state"] == "differs")
    assert set(differs["differences"]) == {"TrangThaiHoSo"}
    assert await records_pushed(portal_url) == pushed, "a report sent something"

    code, sample = await portal_sync(synced.config, "reconcile", "--sample", "4")
    assert sample["checked"] == 4

    code, fixed = await portal_sync(synced.config, "reconcile", "--all", "--fix", "--settle-seconds", "0.2")
    assert code == 0
    assert {f["dossier_no"] for f in fixed["findings"] if f["fixed"]} == set(lost + changed)
    assert await portal_records(portal_url) == synced.newest

    code, clean = await portal_sync(synced.config, "reconcile", "--all")
    assert (code, clean["counts"]) == (0, {"same": len(numbers)})


@SQLITE_ONLY
async def test_reconcile_compares_the_fields_it_is_told_to(synced, portal_url) -> None:
    no = sorted(synced.newest)[0]
    await sim(portal_url, "PATCH", f"/_sim/dossiers/{no}", {"NgayHenTra": "20991231170000"})
    code, report = await portal_sync(synced.config, "reconcile", "--all")
    assert (code, report["counts"]) == (0, {"same": len(synced.newest)})  # the status alone agrees
    code, report = await portal_sync(synced.config, "reconcile", "--all", "--field", "TrangThaiHoSo",
                                     "--field", "NgayHenTra")
    assert code == 3
    assert report["findings"][0]["differences"] == {
        "NgayHenTra": {"local": synced.newest[no]["NgayHenTra"], "portal": "20991231170000"}}


@SQLITE_ONLY
async def test_reconcile_and_backfill_give_up_on_an_unavailable_adapter_and_say_so(synced, portal_url) -> None:
    await inject_fault(portal_url, status=503, times=100_000, retry_after="0")
    code, report = await portal_sync(synced.config, "reconcile", "--all", "--give-up-after", "2")
    assert code == 3
    assert report["counts"] == {"error": len(synced.newest)}
    assert all("did not answer usefully within 2 s" in f["detail"] for f in report["findings"])
    code, done = await portal_sync(synced.config, "backfill", "--all", "--give-up-after", "2")
    assert (code, done["counts"]) == (3, {"failed": len(synced.newest)})
    await clear_faults(portal_url)
    code, report = await portal_sync(synced.config, "reconcile", "--all")
    assert (code, report["counts"]) == (0, {"same": len(synced.newest)})


def test_compare_reads_codes_as_text() -> None:
    assert compare({"TrangThaiHoSo": "4"}, {"TrangThaiHoSo": 4}, ["TrangThaiHoSo"]) == {}
    assert compare({"TrangThaiHoSo": "4"}, {}, ["TrangThaiHoSo"]) == {
        "TrangThaiHoSo": {"local": "4", "portal": None}}


class DaemonMovesOn:
    """The adapter client, except that just before the first push of ``no`` goes out, the daemon syncs
    the dossier's newer version: it reaches the portal and the ledger first, and ours lands after it."""

    def __init__(self, client: PortalClient, store: StateStore, no: str, newer: dict[str, Any]) -> None:
        self._client, self._store, self._no, self._newer = client, store, no, newer
        self.interleaved = False

    async def push_dossiers(self, records: Any, *, updating: bool) -> bool:
        if not self.interleaved and any(r["MaHoSo"] == self._no for r in records):
            self.interleaved = True
            await self._client.push_dossiers([self._newer], updating=True)
            text, digest = hashed_record(self._newer)
            await self._store.record_synced_many([Synced(self._no, 99, digest, "newer-event", text)])
        return await self._client.push_dossiers(records, updating=updating)

    async def push_progress(self, steps: Any) -> None:
        await self._client.push_progress(steps)

    async def push_status(self, data: Any) -> None:
        await self._client.push_status(data)

    async def lookup(self, dossier_no: str) -> dict[str, Any] | None:
        return await self._client.lookup(dossier_no)


@SQLITE_ONLY
@over_both_transports
async def test_a_backfill_never_leaves_an_older_state_over_one_the_daemon_synced_meanwhile(synced,
                                                                                             portal_url) -> None:
    settings = load_settings(synced.config)
    store = await StateStore.open(settings.state.url)
    try:
        no = sorted(synced.newest)[0]
        newer = {**synced.newest[no], "GhiChu": "Hồ sơ đầy đủ (phiên bản 99)", "TrangThaiHoSo": "9"}
        async with PortalClient(settings.portal) as client:
            portal = DaemonMovesOn(client, store, no, newer)
            reconciler = Reconciler(store, PortalGateway(portal, settings.portal, Metrics()), batch_records=100,
                                  concurrency=2)
            records = await store.ledger_records(LedgerFilter(), limit=1000)
            sent = {s.dossier_no: s for s in await reconciler.send(records, outcome="backfilled")}
        assert portal.interleaved
        assert sent[no].state == "sent"
        assert sent[no].version == 99
        assert "newer version" in sent[no].detail
        held = await portal_records(portal_url)
        assert held[no] == newer, "the older state sent by the backfill was left over the newer one"
        assert {k: v for k, v in held.items() if k != no} == {k: v for k, v in synced.newest.items() if k != no}
        assert (await store.get(no)).last_version == 99  # type: ignore[union-attr]
        ledger = await store.ledger_records_of([no])
        assert json.loads(ledger[no].record_json or "{}") == newer
    finally:
        await store.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_reception_times_are_compared_as_instants_whatever_their_zone(kind, tmp_path, monkeypatch) -> None:
    async with state_database(kind, tmp_path) as url:
        store = await StateStore.open(url)
        try:
            # 08:00 in Hanoi is 01:00 UTC; SQLite keeps no zone, so the store must keep instants in UTC.
            at = datetime(2024, 5, 6, 8, 0, tzinfo=ZoneInfo("Asia/Ho_Chi_Minh"))
            await store.record_synced_many([Synced("A-1", 1, "h", "e", "{}", "A", "P", at)])
            since = datetime(2024, 5, 6, 1, 0, tzinfo=UTC)
            assert [r.dossier_no for r in await store.ledger_records(LedgerFilter(received_since=since))] == ["A-1"]
            later = datetime(2024, 5, 6, 1, 1, tzinfo=UTC)
            assert await store.ledger_records(LedgerFilter(received_since=later)) == []
            assert await store.ledger_records(LedgerFilter(received_until=later)) != []
            # Read back (SQLite gives it without a zone) and written again, as a backfill does: unmoved,
            # whatever this machine's zone.
            monkeypatch.setenv("TZ", "Asia/Ho_Chi_Minh")
            time.tzset()
            [record] = await store.ledger_records(LedgerFilter())
            await store.record_synced_many([record.synced("backfilled")])
            [again] = await store.ledger_records(LedgerFilter())
            assert again.received_at is not None
            assert again.received_at.replace(tzinfo=again.received_at.tzinfo or UTC) == at
        finally:
            await store.close()
            monkeypatch.undo()
            time.tzset()


@SQLITE_ONLY
@over_both_transports
async def test_a_replay_never_leaves_an_older_state_over_one_the_daemon_synced_meanwhile(synced,
                                                                                           portal_url) -> None:
    """The same race for a replay: its event is newer than the ledger when read, the daemon syncs a still
    newer one before the replay's push lands."""
    settings = load_settings(synced.config)
    store = await StateStore.open(settings.state.url)
    try:
        no = sorted(synced.newest)[0]
        last = max((m for m in synced.messages if m.dossier_no == no), key=lambda m: m.version)
        event = json.loads(last.value)
        event["event_id"] = str(uuid.uuid4())
        event["dossier"]["version"] = last.version + 1
        event["dossier"]["note"] = f"Hồ sơ đầy đủ (phiên bản {last.version + 1})"  # a record that changed
        value = json.dumps(event).encode()
        await store.record_failures([Failure(
            topic="dossier.events", partition=0, offset=10**9, key=last.key, value=value, headers=[],
            dossier_no=no, event_id=event["event_id"], service="DongBoHoSoMC", mapped_payload=None,
            error_class="PortalRejected", error_kind="permanent", reason="portal_rejected", field=None,
            message="refused", attempts=1, event_version=last.version + 1)])
        newer = {**synced.newest[no], "GhiChu": "Hồ sơ đầy đủ (phiên bản 99)", "TrangThaiHoSo": "9"}
        async with PortalClient(settings.portal) as client:
            portal = DaemonMovesOn(client, store, no, newer)
            gateway = PortalGateway(portal, settings.portal, Metrics())
            mappings = load_mappings(DEFAULT_MAPPINGS_DIR)
            async with open_replayer(settings, mappings, changed_by="test", store=store, gateway=gateway) as replayer:
                outcomes = await replayer.replay(await store.list_failures(FailureFilter(dossier_no=no)))
        assert [o.state for o in outcomes] == ["replayed"]
        assert portal.interleaved
        held = await portal_records(portal_url)
        assert held[no] == newer, "the replayed older state was left over the newer one"
    finally:
        await store.close()


class DaemonSyncsDuringTheSecondLook(DaemonMovesOn):
    """The daemon records a newer version of ``no`` just as reconcile looks at it the second time."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.looks = 0
        self.pushed: list[str] = []

    async def push_dossiers(self, records: Any, *, updating: bool) -> bool:
        self.pushed += [r["MaHoSo"] for r in records]
        return await self._client.push_dossiers(records, updating=updating)

    async def lookup(self, dossier_no: str) -> dict[str, Any] | None:
        if dossier_no == self._no:
            self.looks += 1
            if self.looks == 2:
                text, digest = hashed_record(self._newer)
                await self._store.record_synced_many([Synced(self._no, 99, digest, "newer-event", text)])
        return await self._client.lookup(dossier_no)


@SQLITE_ONLY
async def test_reconcile_fix_leaves_alone_a_dossier_the_daemon_syncs_while_it_checks(synced, portal_url) -> None:
    settings = load_settings(synced.config)
    store = await StateStore.open(settings.state.url)
    try:
        busy, lost = sorted(synced.newest)[:2]
        edited = "7" if synced.newest[busy]["TrangThaiHoSo"] != "7" else "8"
        await sim(portal_url, "PATCH", f"/_sim/dossiers/{busy}", {"TrangThaiHoSo": edited})
        await sim(portal_url, "DELETE", f"/_sim/dossiers/{lost}")
        async with PortalClient(settings.portal) as client:
            # The portal's status was the daemon's newer version's, not an edit: the ledger catches up.
            portal = DaemonSyncsDuringTheSecondLook(client, store, busy,
                                                    {**synced.newest[busy], "TrangThaiHoSo": edited})
            reconciler = Reconciler(store, PortalGateway(portal, settings.portal, Metrics()), batch_records=100,
                                  concurrency=2)
            records = await store.ledger_records(LedgerFilter(), limit=1000)
            findings = {f.dossier_no: f for f in await reconciler.check(records, fix=True, settle_seconds=0.01)}
        assert portal.looks == 2
        assert (findings[busy].state, findings[busy].fixed) == ("same", None)  # the daemon's newer state agrees
        assert (findings[lost].state, findings[lost].fixed) == ("missing", True)
        assert portal.pushed == [lost], "a dossier being synced was sent by reconcile"
    finally:
        await store.close()
