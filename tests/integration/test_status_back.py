"""Status back: a dossier that started on the national portal has its newest state sent back with
DongBoTrangThaiHoSo (one object per call, the national number and ours), through the real broker, the
daemon and the simulator on loopback; the ledger keeps it, and a backfill sends it back the same way.

The simulator's side of the contract: ``POST /_sim/submissions`` registers dossiers submitted on the
portal; ``DongBoTrangThaiHoSo`` requires ``type`` "2" and ``data`` an object naming a registered submission,
with ``MaHoSoDonVi`` and a ``TrangThaiHoSo`` of "1".."10", and appends that data to the submission's
``status_back``, shown by ``GET /_sim/submissions/{MaHoSo}``."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from connector.config import DEFAULT_MAPPINGS_DIR, load_settings
from connector.errors import PermanentError
from connector.kafka import ERROR_HEADER_PREFIX
from connector.observability import Metrics
from connector.operators.reconcile import Reconciler
from connector.portal.client import PUSH_STATUS, CallRecord, PortalClient
from connector.portal.gateway import PortalGateway
from connector.push.events import decode_event
from connector.push.mapping import STATUS_BACK_FIELDS, load_mappings, map_event
from connector.push.sync import hashed_record
from connector.service import Service
from connector.store import LedgerFilter, StateStore, Synced
from connector.store.tables import dossier_ledger
from tests.factories import encode, event_dict, portal_record
from tests.integration.pipeline_harness import (
    HTTP_TIMEOUT,
    Topics,
    daemon_settings,
    inject_fault,
    over_both_transports,
    portal_config,
    portal_dossiers,
    run_until_committed,
    unique_group,
)
from tests.kafkatools import consume_all, produce

MAPPINGS = load_mappings(DEFAULT_MAPPINGS_DIR)
AGENCY = "000.00.01.G12"
FROM_PORTAL_A = "G22.99-201005-0001"  # numbered by the national portal
FROM_PORTAL_B = "G22.99-201005-0002"
WITHOUT_OUR_NUMBER = "G22.99-201005-0003"
LOCAL = f"{AGENCY}-201005-0100"


def submission(no: str) -> dict[str, Any]:
    return {"MaHoSo": no, "MaTTHC": "1.009972.000.00.00.G12", "DonViXuLy": AGENCY,
            "NgayNopHoSo": "20201005083000", "PhienBan": "1", "TrangThaiHoSo": "1", "TaiLieuNop": []}


async def register_submissions(portal_url: str, *numbers: str) -> None:
    async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http, http.post(
        f"{portal_url}/_sim/submissions", json={"submissions": [submission(no) for no in numbers]}
    ) as reply:
        assert reply.status < 300, f"the simulator took no submissions: {reply.status} {await reply.text()}"


async def status_back(portal_url: str, no: str) -> list[dict[str, Any]]:
    """What the portal received back for one submission, in arrival order."""
    async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http, http.get(
        f"{portal_url}/_sim/submissions/{no}"
    ) as reply:
        assert reply.status == 200, await reply.text()
        received: list[dict[str, Any]] = (await reply.json())["status_back"]
        return received


def sent_fields(data: dict[str, Any]) -> dict[str, Any]:
    return {name: data.get(name) for name in STATUS_BACK_FIELDS}


def from_portal(no: str, version: int, minute: int, **dossier: Any) -> dict[str, Any]:
    document = event_dict(**{"no": no, "version": version, "origin": "portal", "channel": "online", "receipt_no": None,
                             **dossier})
    document["occurred_at"] = f"2020-10-05T09:{minute:02d}:00+07:00"
    return document


def expected(document: dict[str, Any]) -> dict[str, Any]:
    return map_event(decode_event(*encode(document), max_bytes=1 << 20), MAPPINGS).record


async def ledger_rows(url: str, *numbers: str) -> dict[str, tuple[int, str, str | None, str | None]]:
    """Per dossier: version, record hash, record as sent, last outcome."""
    store = await StateStore.open(url)
    try:
        c = dossier_ledger.c
        query = select(c.dossier_no, c.last_version, c.record_hash, c.record_json, c.last_outcome).where(
            c.dossier_no.in_(numbers))
        async with store.engine.connect() as conn:
            return {row[0]: tuple(row[1:]) for row in (await conn.execute(query)).all()}
    finally:
        await store.close()


def outcomes(service: Service) -> Counter[tuple[str, str]]:
    counted: Counter[tuple[str, str]] = Counter()
    for metric in service.metrics.event_outcomes.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                counted[(sample.labels["outcome"], sample.labels["reason"])] += int(sample.value)
    return counted


@pytest.mark.broker
@over_both_transports
async def test_a_dossier_from_the_national_portal_gets_its_newest_status_back_and_the_ledger_keeps_it(
    kafka_bootstrap, topics, portal_url, tmp_path
) -> None:
    await register_submissions(portal_url, FROM_PORTAL_A, FROM_PORTAL_B)
    stream = Topics(await topics.create("dossier.events", partitions=2),
                    await topics.create("dossier.events.dlq", partitions=1), unique_group())
    a = [
        from_portal(FROM_PORTAL_A, 1, 1, status="new", local_no="MC-0001"),
        from_portal(FROM_PORTAL_A, 2, 2, status="processing", local_no="MC-0001", event_type="dossier.updated"),
        from_portal(FROM_PORTAL_A, 3, 3, status="done", local_no="MC-0001", event_type="dossier.completed",
                    finished_at="2020-10-05T09:03:00+07:00"),
    ]
    b = from_portal(FROM_PORTAL_B, 1, 4, status="received", receipt_no="BN-0002")  # our number: the receipt's
    nameless = from_portal(WITHOUT_OUR_NUMBER, 1, 5)
    local = event_dict(no=LOCAL)
    sent = [encode(document) for document in (*a, b, nameless, local)]
    ends = await produce(kafka_bootstrap, stream.events, sent)

    settings = daemon_settings(kafka_bootstrap, portal_url, stream, tmp_path)
    service, _ = await run_until_committed(settings, kafka_bootstrap, stream, ends)

    newest_a, newest_b = expected(a[-1]), expected(b)
    assert newest_a["MaHoSoDonVi"] == "MC-0001" and newest_a["TrangThaiHoSo"] == "9"
    assert newest_b["MaHoSoDonVi"] == "BN-0002"
    received_a = [sent_fields(data) for data in await status_back(portal_url, FROM_PORTAL_A)]
    assert received_a[-1] == newest_a
    # Coalescing may skip a version; none arrives after a newer one.
    versions = [[expected(doc) for doc in a].index(data) + 1 for data in received_a]
    assert versions == sorted(set(versions)) and versions[-1] == 3
    assert [sent_fields(data) for data in await status_back(portal_url, FROM_PORTAL_B)] == [newest_b]
    # Never as a whole record: the portal holds only the local dossier's.
    assert set(await portal_dossiers(portal_url)) == {LOCAL}

    ledger = await ledger_rows(settings.state.url, FROM_PORTAL_A, FROM_PORTAL_B, WITHOUT_OUR_NUMBER)
    for no, newest, version in ((FROM_PORTAL_A, newest_a, 3), (FROM_PORTAL_B, newest_b, 1)):
        text, digest = hashed_record(newest)
        assert ledger[no] == (version, digest, text, "status_back"), no
    assert WITHOUT_OUR_NUMBER not in ledger

    [dead] = await consume_all(kafka_bootstrap, stream.dead_letter, count=1, timeout=30)
    headers = {k: (v or b"").decode() for k, v in dead.headers}
    assert (headers[ERROR_HEADER_PREFIX + "reason"], headers[ERROR_HEADER_PREFIX + "field"]) == (
        "local_no_missing", "dossier.local_no")
    assert (dead.key, dead.value) == sent[4]  # the event without our number, byte for byte

    counted = outcomes(service)
    assert counted[("failed", "local_no_missing")] == 1
    assert counted[("synced", "status_back")] >= 2
    assert sum(counted.values()) == len(sent)


def portal_settings(portal_url: str, tmp_path: Any) -> Any:
    return load_settings(None, portal={
        **portal_config(portal_url), "madonvi": AGENCY,
        "retry": {"initial_backoff_seconds": 0.01, "max_backoff_seconds": 0.05},
    }, state={"url": f"sqlite+aiosqlite:///{tmp_path / 'state.db'}"})


@over_both_transports
async def test_a_backfill_sends_a_status_back_again_as_a_status_back(portal_url, tmp_path) -> None:
    await register_submissions(portal_url, FROM_PORTAL_A)
    settings = portal_settings(portal_url, tmp_path)
    back = expected(from_portal(FROM_PORTAL_A, 4, 9, status="returned", local_no="MC-0001",
                                returned_at="2020-10-05T09:09:00+07:00"))
    whole = portal_record(LOCAL)
    store = await StateStore.open(settings.state.url)
    try:
        rows = []
        for no, record, outcome in ((FROM_PORTAL_A, back, "status_back"), (LOCAL, whole, "created")):
            text, digest = hashed_record(record)
            rows.append(Synced(no, 4, digest, f"event-{no}", text, AGENCY, "BXD-NLHD-01", None, outcome))
        await store.record_synced_many(rows)
        async with PortalClient(settings.portal) as client:
            reconciler = Reconciler(store, PortalGateway(client, settings.portal, Metrics()), batch_records=100,
                                  concurrency=2)
            records = await store.ledger_records(LedgerFilter())
            done = {s.dossier_no: s for s in await asyncio.wait_for(
                reconciler.send(records, outcome="backfilled"), timeout=30)}
    finally:
        await store.close()

    assert {no: s.state for no, s in done.items()} == {FROM_PORTAL_A: "sent", LOCAL: "sent"}
    assert "DongBoTrangThaiHoSo" in done[FROM_PORTAL_A].detail
    assert [sent_fields(data) for data in await status_back(portal_url, FROM_PORTAL_A)] == [back]
    assert set(await portal_dossiers(portal_url)) == {LOCAL}
    ledger = await ledger_rows(settings.state.url, FROM_PORTAL_A, LOCAL)
    assert (ledger[FROM_PORTAL_A][3], ledger[LOCAL][3]) == ("status_back", "backfilled")


@over_both_transports
async def test_each_status_back_is_one_call_for_one_dossier_waited_out_and_refused_as_a_record(
    portal_url, tmp_path,
) -> None:
    # The dossier is no submission the portal has: after a 503, waited out, the answer is a refusal of this
    # record (an error_code), raised as the record's own, not waited out. The audit trail names the dossier of
    # the object body.
    settings = portal_settings(portal_url, tmp_path)
    calls: list[CallRecord] = []
    await inject_fault(portal_url, status=503, times=1, service=PUSH_STATUS)
    data = expected(from_portal("G22.99-201005-0999", 1, 1, local_no="MC-0999"))
    async with PortalClient(settings.portal, auditor=calls.append) as client:
        gateway = PortalGateway(client, settings.portal, Metrics())
        with pytest.raises(PermanentError) as refused:
            await asyncio.wait_for(gateway.push_status(data), timeout=30)
    assert refused.value.reason == "portal_rejected" and not refused.value.affects_every_record
    pushes = [call for call in calls if call.service == PUSH_STATUS]
    assert [(call.dossiers, call.records) for call in pushes] == [(("G22.99-201005-0999",), 1)] * 2
    assert pushes[-1].result == "portal_rejected" and pushes[0].result != "ok"

