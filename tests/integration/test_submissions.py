"""Submissions: the inbound push endpoint (created / duplicate / error, exactly once, large files apart),
a poll that meets a file whose hash does not match (rejected with the field and the rule, not acknowledged),
and arbitrary JSON at the endpoint (always a well-formed error reply, never a 500, nothing published)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.config import DEFAULT_MAPPINGS_DIR, Settings, load_settings
from connector.kafka import build_producer, read_topic
from connector.listeners import create_public_app, start_public
from connector.national_time import PORTAL_TZ
from connector.observability import Metrics
from connector.outbox.relay import MESSAGE_ID_HEADER, OutboxRelay
from connector.portal.client import PortalClient
from connector.portal.gateway import PortalGateway
from connector.pull.attachments import AttachmentStore
from connector.pull.intake import SubmissionIntake, max_pushed_body_bytes
from connector.pull.poller import SubmissionPoller
from connector.push.mapping import load_mappings
from connector.store import StateStore
from connector.store.way_back import InboundStore, SubmissionKey
from tests.conftest import TopicFactory
from tests.integration.pipeline_harness import over_both_transports, portal_config
from tests.integration.served_in_thread import ServedInThread

AGENCY = "000.00.01.G12"
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=15)
TOKEN = "inbound-token-for-tests"


def _settings(tmp_path: Path, bootstrap: str, topic: str, portal_url: str = "http://127.0.0.1:9") -> Settings:
    return load_settings(None, **{
        "kafka": {"bootstrap_servers": bootstrap, "topics": {"submissions": topic}},
        "portal": {**portal_config(portal_url), "madonvi": AGENCY, "rate_limit": {"requests_per_second": 1000},
                   "retry": {"initial_backoff_seconds": 0.02, "max_backoff_seconds": 0.2}},
        "state": {"url": f"sqlite+aiosqlite:///{tmp_path / 'state.db'}"},
        "submissions": {"attachments_dir": str(tmp_path / "attachments"), "max_inline_bytes": 4096,
                        "agencies": [AGENCY], "overlap_days": 1},
        "public": {"listen": "127.0.0.1:0", "inbound_token": TOKEN}})


def _pushed(no: str, revision: int, files: list[bytes]) -> dict[str, Any]:
    now = datetime.now(PORTAL_TZ).strftime("%Y%m%d%H%M%S")
    return {"MaHoSo": no, "PhienBan": str(revision), "MaTTHC": "1.009972.000.00.00.G12", "DonViXuLy": AGENCY,
            "NgayNopHoSo": now, "TrangThaiHoSo": "1", "ChuHoSo": "Nguyễn Văn An", "LoaiDoiTuong": "1",
            "TrichYeuHoSo": "Cấp chứng chỉ năng lực hoạt động xây dựng hạng I",
            "TaiLieuNop": [{"TepDinhKemId": f"{no}-{i}", "TenTepDinhKem": f"Tài liệu {i}.pdf",
                            "MaThanhPhanHoSo": "TPHS-01", "Base64": base64.b64encode(content).decode()}
                           for i, content in enumerate(files)]}


@dataclass
class Wired:
    settings: Settings
    store: StateStore
    inbound: InboundStore
    relay: OutboxRelay
    intake: SubmissionIntake
    url: str
    metrics: Metrics


@pytest.fixture
async def wired(tmp_path, kafka_bootstrap: str, topics: TopicFactory, portal_url: str) -> AsyncIterator[Wired]:
    topic = await topics.create("portal.submissions", partitions=2)
    settings = _settings(tmp_path, kafka_bootstrap, topic, portal_url)
    store = await StateStore.open(settings.state.url)
    producer = build_producer(settings.kafka)
    await asyncio.wait_for(producer.start(), 20)
    metrics = Metrics()
    inbound = InboundStore(store)
    relay = OutboxRelay(inbound, producer, settings.kafka, metrics)
    intake = SubmissionIntake(settings, load_mappings(DEFAULT_MAPPINGS_DIR), inbound, relay,
                              AttachmentStore(settings.submissions.attachments_dir), metrics)
    app = create_public_app(metrics=metrics, submissions_path=settings.public.submissions_path,
                            payments_path=settings.public.payments_path, intake=intake, payments=None,
                            max_submission_bytes=max_pushed_body_bytes(intake.limits), inbound_token=TOKEN)
    runner, url = await start_public(app, "127.0.0.1", 0)
    try:
        yield Wired(settings, store, inbound, relay, intake, url, metrics)
    finally:
        await runner.cleanup()
        await asyncio.wait_for(producer.stop(), 20)
        await store.close()


async def _post(wired: Wired, body: Any, *, token: str = TOKEN) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http, http.post(
            wired.url + wired.settings.public.submissions_path, json=body,
            headers={"Authorization": f"Bearer {token}"}) as response:
        return response.status, await response.json()


async def _published(settings: Settings) -> list[Any]:
    records: list[Any] = []
    async for batch in read_topic(settings.kafka, settings.kafka.topics.submissions, wait_seconds=20):
        records.extend(batch)
    return records


async def test_a_pushed_dossier_is_created_once_and_its_large_file_kept_apart(wired: Wired) -> None:
    small, large = b"%PDF small" * 10, bytes(range(256)) * 40  # 10 KiB: over the 4 KiB inline limit
    body = _pushed(f"{AGENCY}-261124-0001", 1, [small, large])
    assert await _post(wired, body) == (200, {"error_code": 0, "message": "created"})
    status, reply = await _post(wired, body)
    assert (status, reply["error_code"]) == (200, 1)
    status, reply = await _post(wired, body, token="wrong")
    assert (status, reply["error_code"]) == (401, -1)
    await wired.relay.publish_owed()

    records = await _published(wired.settings)
    assert len(records) == 1
    assert dict(records[0].headers)[MESSAGE_ID_HEADER] == f"submission:{AGENCY}-261124-0001:1".encode()
    documents = json.loads(records[0].value)["submission"]["documents"]
    inline = [d for d in documents if "content_base64" in d]
    apart = [d for d in documents if "path" in d]
    assert base64.b64decode(inline[0]["content_base64"]) == small
    assert Path(apart[0]["path"]).read_bytes() == large  # noqa: ASYNC240 - a test reading what it checks
    assert apart[0]["sha256"] == hashlib.sha256(large).hexdigest()


async def test_a_pushed_dossier_that_breaks_a_rule_is_refused_naming_the_field_and_recorded(wired: Wired) -> None:
    body = _pushed(f"{AGENCY}-261124-0002", 1, [b"content"])
    body["TaiLieuNop"][0]["MaBam"] = "0" * 64  # declared hash that the content does not have
    status, reply = await _post(wired, body)
    assert (status, reply["error_code"]) == (400, -1)
    assert "TaiLieuNop[0]" in reply["message"]
    rows = await wired.inbound.submissions_list(state="rejected")
    assert [(r.dossier_no, r.reason is not None, r.field) for r in rows] == [
        (f"{AGENCY}-261124-0002", True, rows[0].field)]
    assert rows[0].field is not None and rows[0].field.startswith("TaiLieuNop[0]")
    assert await wired.inbound.unpublished() == []


@over_both_transports
async def test_a_polled_submission_whose_file_does_not_hash_is_rejected_and_not_acknowledged(
        wired: Wired, portal_url: str) -> None:
    good = _pushed(f"{AGENCY}-261124-0003", 1, [b"good file"])
    bad = _pushed(f"{AGENCY}-261124-0004", 1, [b"bad file"])
    bad["TaiLieuNop"][0]["MaBam"] = hashlib.sha256(b"another file").hexdigest()
    async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http, http.post(
            f"{portal_url}/_sim/submissions", json={"submissions": [good, bad]}) as response:
        assert response.status == 201, await response.text()
    metrics = Metrics()
    portal = PortalClient(wired.settings.portal)
    try:
        gateway = PortalGateway(portal, wired.settings.portal, metrics)
        poller = SubmissionPoller(wired.settings, wired.intake, wired.inbound, wired.relay, portal, gateway, metrics)
        report = await asyncio.wait_for(poller.poll(AGENCY), 30)
        assert (report.listed, report.accepted, report.rejected, report.acknowledged) == (2, 1, 1, 1)
        assert report.cursor_moved_to == datetime.now(PORTAL_TZ).date()
        again = await asyncio.wait_for(poller.poll(AGENCY), 30)
        assert (again.accepted, again.met_before, again.acknowledged) == (0, 2, 0)
    finally:
        await portal.close()
    async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http:
        views = {}
        for no in (good["MaHoSo"], bad["MaHoSo"]):
            async with http.get(f"{portal_url}/_sim/submissions/{no}") as response:
                views[no] = await response.json()
    assert views[good["MaHoSo"]]["acknowledged"] == {"1": 1}
    assert views[bad["MaHoSo"]]["acknowledged"] == {}
    key = SubmissionKey(bad["MaHoSo"], 1)
    rejected = (await wired.inbound.submission_states([key]))[key]
    assert (rejected.state, rejected.reason) == ("rejected", "file_sha256_mismatch")
    assert [json.loads(r.value)["submission"]["no"] for r in await _published(wired.settings)] == [good["MaHoSo"]]


# --- arbitrary JSON at the endpoint -------------------------------------------------------------------------


class Endpoint(ServedInThread):
    """The public app with a real intake on its own loop in a thread, so hypothesis can drive it."""

    def __init__(self, tmp_path: Path) -> None:
        super().__init__()
        self.tmp_path = tmp_path

    async def _start(self) -> None:
        self.settings = _settings(self.tmp_path, "127.0.0.1:9", "portal.submissions")
        self.store = await StateStore.open(self.settings.state.url)
        self.inbound = InboundStore(self.store)
        metrics = Metrics()
        relay = OutboxRelay(self.inbound, None, self.settings.kafka, metrics)  # never runs: nothing is sent
        intake = SubmissionIntake(self.settings, load_mappings(DEFAULT_MAPPINGS_DIR), self.inbound, relay,
                                  AttachmentStore(self.settings.submissions.attachments_dir), metrics)
        app = create_public_app(metrics=metrics, submissions_path=self.settings.public.submissions_path,
                                payments_path=self.settings.public.payments_path, intake=intake, payments=None,
                                max_submission_bytes=max_pushed_body_bytes(intake.limits), inbound_token=TOKEN)
        self.runner, url = await start_public(app, "127.0.0.1", 0)
        self.port = int(url.rsplit(":", 1)[1])

    def post(self, body: bytes) -> tuple[int, Any]:
        return self.post_json(self.settings.public.submissions_path, body, {"Authorization": f"Bearer {TOKEN}"})

    def owed(self) -> int:
        return int(self.call(self.inbound.outbox_backlog()))

    async def _close(self) -> None:
        await self.runner.cleanup()
        await self.store.close()


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    served = Endpoint(tmp_path_factory.mktemp("submissions"))
    served.start()
    yield served
    served.stop()


FIELDS = ["MaHoSo", "PhienBan", "MaTTHC", "DonViXuLy", "NgayNopHoSo", "TrangThaiHoSo", "ChuHoSo", "LoaiDoiTuong",
          "HinhThuc", "TaiLieuNop", "DinhDanhCHS", "Base64", "KichThuoc", "MaBam", "TepDinhKemId", "TenTepDinhKem"]
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30) | st.sampled_from(["1", "20261124080000", AGENCY, f"{AGENCY}-1", "aGVsbG8=", "\ud800"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8),
                                                                inner, max_size=8),
    max_leaves=16)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(JSON)
def test_any_json_gets_a_well_formed_error_and_publishes_nothing(endpoint: Endpoint, body: Any) -> None:
    status, reply = endpoint.post(json.dumps(body).encode())
    assert status in (400, 413), (status, reply)
    assert reply["error_code"] == -1 and isinstance(reply["message"], str) and reply["message"]
    assert endpoint.owed() == 0


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=200) | st.just(b"[" * 50_000))
def test_bytes_that_are_not_json_get_a_well_formed_error(endpoint: Endpoint, body: bytes) -> None:
    status, reply = endpoint.post(body)
    assert status == 400 and reply["error_code"] == -1
    assert endpoint.owed() == 0


def test_the_control_a_valid_dossier_is_accepted(endpoint: Endpoint) -> None:
    """The endpoint does accept what is valid (so the errors above are not those of a broken intake)."""
    status, reply = endpoint.post(json.dumps(_pushed(f"{AGENCY}-261124-0099", 1, [b"x"])).encode())
    assert (status, reply["error_code"]) == (200, 0)
    assert endpoint.owed() == 1
