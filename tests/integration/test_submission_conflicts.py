"""Two bodies for one submission revision, and the acknowledgement of pushed revisions, on SQLite and
PostgreSQL, through the real endpoint on loopback, the real broker and the portal simulator.

- The same body again is a harmless duplicate (reply 1).
- A different body with the same number and revision is a conflict: neither is published while it stands,
  the pusher is told ``-1``, and the confirmation (``TraCuuHoSo``, on the lease holder) publishes what the
  portal holds, whichever body that is, or neither.
- A revision already on the topic when the conflict arrives stays as it is when the portal confirms it; when
  the portal holds another body, the conflict is kept for an operator (``unsettled``), never acknowledged.
- Every published revision is acknowledged (``CapNhatDaNhanHoSo``) once the broker holds it, however it came.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from connector.config import DEFAULT_MAPPINGS_DIR, Settings, load_settings
from connector.kafka import build_producer, read_topic
from connector.listeners import create_public_app, start_public
from connector.national_time import PORTAL_TZ
from connector.observability import Metrics
from connector.outbox.relay import OutboxRelay
from connector.portal.client import PortalClient
from connector.portal.gateway import PortalGateway
from connector.pull.attachments import AttachmentStore
from connector.pull.intake import SubmissionIntake, max_pushed_body_bytes
from connector.pull.poller import SubmissionPoller
from connector.push.mapping import load_mappings
from connector.store import StateStore
from connector.store.way_back import InboundStore, SubmissionKey
from tests.conftest import TopicFactory
from tests.databases import state_database
from tests.integration.pipeline_harness import SIM

pytestmark = pytest.mark.broker

AGENCY = "000.00.01.G12"
TOKEN = "inbound-token-for-tests"
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=20)
STEP = 30.0
CONFLICT = "conflicts with an earlier push of this revision; it is being confirmed with the portal"


def body(no: str, file: bytes, *, holder: str = "Nguyễn Văn An", revision: int = 1) -> dict[str, Any]:
    return {"MaHoSo": no, "PhienBan": str(revision), "MaTTHC": "1.009972.000.00.00.G12", "DonViXuLy": AGENCY,
            "NgayNopHoSo": datetime.now(PORTAL_TZ).strftime("%Y%m%d") + "080000", "TrangThaiHoSo": "1",
            "ChuHoSo": holder, "LoaiDoiTuong": "1", "TrichYeuHoSo": "Cấp chứng chỉ hành nghề",
            "TaiLieuNop": [{"TepDinhKemId": "1", "TenTepDinhKem": "Đơn đề nghị.pdf", "MaThanhPhanHoSo": "TPHS-01",
                            "Base64": base64.b64encode(file).decode()}]}


@dataclass
class WayBack:
    settings: Settings
    inbound: InboundStore
    relay: OutboxRelay
    poller: SubmissionPoller
    metrics: Metrics
    url: str
    portal_url: str
    http: aiohttp.ClientSession

    async def push(self, record: dict[str, Any]) -> tuple[int, int, str]:
        async with self.http.post(self.url, json=record, headers={"Authorization": f"Bearer {TOKEN}"}) as r:
            reply = await r.json()
            return r.status, reply["error_code"], reply["message"]

    async def portal_holds(self, *records: dict[str, Any]) -> None:
        async with self.http.post(f"{self.portal_url}/_sim/submissions", json={"submissions": list(records)}) as r:
            assert r.status == 201, await r.text()

    async def acknowledged(self, no: str) -> dict[str, int]:
        async with self.http.get(f"{self.portal_url}/_sim/submissions/{no}") as r:
            view: dict[str, Any] = await r.json()
            return dict(view["acknowledged"])

    async def published(self) -> list[dict[str, Any]]:
        records: list[Any] = []
        async for batch in read_topic(self.settings.kafka, self.settings.kafka.topics.submissions, wait_seconds=20):
            records.extend(batch)
        return [json.loads(r.value) for r in records]

    def conflicts(self, outcome: str) -> float:
        value = self.metrics.registry.get_sample_value("portal_sync_inbound_conflicts_total", {"outcome": outcome})
        return value or 0.0


@pytest.fixture(params=["sqlite", "postgresql"])
async def way_back(request: pytest.FixtureRequest, tmp_path: Path, kafka_bootstrap: str, topics: TopicFactory,
                   portal_url: str) -> AsyncIterator[WayBack]:
    topic = await topics.create("portal.submissions")
    async with state_database(request.param, tmp_path) as url:
        settings = load_settings(None, **{
            "kafka": {"bootstrap_servers": kafka_bootstrap, "topics": {"submissions": topic}},
            "portal": {"adapter_url": portal_url, "username": SIM.username, "password": SIM.password,
                       "madonvi": AGENCY, "rate_limit": {"requests_per_second": 1000},
                       "retry": {"initial_backoff_seconds": 0.02, "max_backoff_seconds": 0.2}},
            "state": {"url": url},
            "submissions": {"attachments_dir": str(tmp_path / "attachments"), "agencies": [AGENCY]},
            "public": {"listen": "127.0.0.1:0", "inbound_token": TOKEN}})
        (tmp_path / "config.yaml").write_text(yaml.safe_dump({"state": {"url": url}}), encoding="utf-8")
        store = await StateStore.open(url)
        producer = build_producer(settings.kafka)
        await asyncio.wait_for(producer.start(), STEP)
        portal = PortalClient(settings.portal)
        metrics = Metrics()
        inbound = InboundStore(store)
        relay = OutboxRelay(inbound, producer, settings.kafka, metrics)
        intake = SubmissionIntake(settings, load_mappings(DEFAULT_MAPPINGS_DIR), inbound, relay,
                                  AttachmentStore(settings.submissions.attachments_dir), metrics)
        poller = SubmissionPoller(settings, intake, inbound, relay, portal, PortalGateway(portal, settings.portal,
                                                                                          metrics), metrics)
        app = create_public_app(metrics=metrics, submissions_path=settings.public.submissions_path,
                                payments_path=settings.public.payments_path, intake=intake, payments=None,
                                max_submission_bytes=max_pushed_body_bytes(intake.limits), inbound_token=TOKEN)
        runner, base = await start_public(app, "127.0.0.1", 0)
        try:
            async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http:
                yield WayBack(settings, inbound, relay, poller, metrics, base + settings.public.submissions_path,
                              portal_url, http)
        finally:
            await runner.cleanup()
            await portal.close()
            await asyncio.wait_for(producer.stop(), STEP)
            await store.close()


def _sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


async def test_a_second_body_for_a_revision_is_a_conflict_and_what_the_portal_holds_is_published(
        way_back: WayBack) -> None:
    no = f"{AGENCY}-261124-0801"
    first, second, portals = body(no, b"first body"), body(no, b"second body"), body(no, b"the portal's body")
    await way_back.portal_holds(portals)
    assert await way_back.push(first) == (200, 0, "created")
    assert (await way_back.push(first))[:2] == (200, 1)  # the same body again: a harmless duplicate
    assert await way_back.push(second) == (400, -1, CONFLICT)
    assert await way_back.push(second) == (400, -1, CONFLICT)  # the same conflicting body: one conflict
    assert way_back.conflicts("detected") == 1

    # Neither is published while the conflict stands, nor acknowledged.
    assert await asyncio.wait_for(way_back.relay.publish_owed(), STEP) == 0
    assert await way_back.poller.acknowledge_published() == 0
    [kept] = await way_back.inbound.submission_conflicts()
    assert (kept.dossier_no, kept.revision, kept.outcome) == (no, 1, None)
    assert kept.first_sha256 != kept.conflicting_sha256

    # Confirmed with the portal: its record (equal to neither body) is what is published, and acknowledged.
    assert await asyncio.wait_for(way_back.poller.settle_conflicts(), STEP) == 1
    assert way_back.conflicts("settled_portal") == 1
    assert await asyncio.wait_for(way_back.relay.publish_owed(), STEP) == 1
    [record] = await way_back.published()
    assert [d["sha256"] for d in record["submission"]["documents"]] == [_sha(b"the portal's body")]
    assert await way_back.poller.acknowledge_published() == 1
    assert await way_back.acknowledged(no) == {"1": 1}
    [settled] = await way_back.inbound.submission_conflicts()
    assert settled.outcome == "settled_portal"

    # Settled by the portal: another body for this revision is refused at once, publishing nothing.
    status, code, message = await way_back.push(first)
    assert (status, code) == (400, -1) and "portal" in message
    assert await asyncio.wait_for(way_back.poller.settle_conflicts(), STEP) == 0
    assert await asyncio.wait_for(way_back.relay.publish_owed(), STEP) == 0
    assert await way_back.push(portals) == (200, 1, "duplicate: this revision was received before")


async def test_a_conflict_the_portal_settles_in_favour_of_the_second_body_publishes_that(
        way_back: WayBack) -> None:
    no = f"{AGENCY}-261124-0802"
    first, second = body(no, b"first body"), body(no, b"second body", holder="Trần Thị Bình")
    await way_back.portal_holds(second)
    assert (await way_back.push(first))[1] == 0
    assert (await way_back.push(second))[1] == -1
    assert await asyncio.wait_for(way_back.poller.settle_conflicts(), STEP) == 1
    assert await asyncio.wait_for(way_back.relay.publish_owed(), STEP) == 1
    [record] = await way_back.published()
    assert record["submission"]["applicant"]["name"] == "Trần Thị Bình"
    assert [d["sha256"] for d in record["submission"]["documents"]] == [_sha(b"second body")]


async def test_a_conflict_with_a_published_revision_the_portal_confirms_publishes_nothing_more(
        way_back: WayBack) -> None:
    no = f"{AGENCY}-261124-0803"
    first, second = body(no, b"first body"), body(no, b"second body")
    await way_back.portal_holds(first)
    assert (await way_back.push(first))[1] == 0
    assert await asyncio.wait_for(way_back.relay.publish_owed(), STEP) == 1
    assert await way_back.push(second) == (400, -1, CONFLICT)
    assert await way_back.poller.acknowledge_published() == 0  # not while the conflict stands
    assert await asyncio.wait_for(way_back.poller.settle_conflicts(), STEP) == 1
    assert await asyncio.wait_for(way_back.relay.publish_owed(), STEP) == 0
    assert [r["submission"]["documents"][0]["sha256"] for r in await way_back.published()] == [_sha(b"first body")]
    assert await way_back.poller.acknowledge_published() == 1
    assert await way_back.acknowledged(no) == {"1": 1}


async def test_a_conflict_the_portal_cannot_settle_is_kept_shown_and_never_acknowledged(
        way_back: WayBack, tmp_path: Path) -> None:
    no = f"{AGENCY}-261124-0804"
    first, second = body(no, b"first body"), body(no, b"second body")
    await way_back.portal_holds(second)
    assert (await way_back.push(first))[1] == 0
    assert await asyncio.wait_for(way_back.relay.publish_owed(), STEP) == 1  # the first is out already
    assert (await way_back.push(second))[1] == -1
    assert await asyncio.wait_for(way_back.poller.settle_conflicts(), STEP) == 0
    assert way_back.conflicts("unsettled") == 1
    [kept] = await way_back.inbound.submission_conflicts()
    assert kept.outcome == "unsettled" and kept.note is not None and "published" in kept.note
    assert await asyncio.wait_for(way_back.poller.settle_conflicts(), STEP) == 0  # not asked again
    assert way_back.conflicts("unsettled") == 1
    assert await way_back.poller.acknowledge_published() == 0
    assert await way_back.acknowledged(no) == {}
    state = (await way_back.inbound.submission_states([SubmissionKey(no, 1)]))[SubmissionKey(no, 1)]
    assert state.state == "conflict"

    # The operator's view.
    cli = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "connector", "submissions", "list", "--conflicts", "--json",
        "--config", str(tmp_path / "config.yaml"), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(cli.communicate(), 60)
    assert cli.returncode == 0, err.decode()
    shown = json.loads(out)
    assert [(c["dossier_no"], c["revision"], c["outcome"]) for c in shown["conflicts"]] == [(no, 1, "unsettled")]
    assert "Nguyễn" not in out.decode()  # digests and rules, not the bodies


async def test_a_pushed_revision_is_acknowledged_to_the_portal_once_the_broker_holds_it(way_back: WayBack) -> None:
    no = f"{AGENCY}-261124-0805"
    pushed = body(no, b"pushed body")
    await way_back.portal_holds(pushed)
    assert (await way_back.push(pushed))[1] == 0
    assert await way_back.poller.acknowledge_published() == 0  # not on the topic yet
    assert await way_back.acknowledged(no) == {}
    assert await asyncio.wait_for(way_back.relay.publish_owed(), STEP) == 1
    assert await way_back.poller.acknowledge_published() == 1
    assert await way_back.acknowledged(no) == {"1": 1}
    assert await way_back.poller.acknowledge_published() == 0  # told once
