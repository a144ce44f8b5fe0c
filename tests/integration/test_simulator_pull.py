"""The simulator's way back over real HTTP on loopback: citizen submissions pulled through the adapter's
services, and the Payment Platform's QUERY and result notification."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from connector.dev.simulator.app import start_simulator
from connector.dev.simulator.state import SimulatorConfig
from connector.national_time import PORTAL_TZ, portal_time
from connector.payments.checksum import (
    NOTIFICATION_FIELDS,
    QUERY_FIELDS,
    QUERY_REPLY_FIELDS,
    REPLY_FIELDS,
    ChecksumRefused,
    signed,
    verify,
)

AGENCY = "000.00.01.H22"
NUMBER = f"{AGENCY}-260105-0001"
DEADLINE = 10  # seconds; bounds every network await in this module
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=DEADLINE)
CONFIG = SimulatorConfig()


@dataclass
class Portal:
    url: str
    http: aiohttp.ClientSession
    session: str = ""

    async def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        async with self.http.request(method, path, **kwargs) as response:
            return response.status, await response.json()

    async def login(self) -> None:
        status, reply = await self.call("POST", CONFIG.auth_endpoint,
                                        json={"username": CONFIG.username, "password": CONFIG.password})
        assert status == 200, reply
        self.session = reply["session"]

    async def service(self, name: str, **params: Any) -> dict[str, Any]:
        body = {"session": self.session, "madonvi": AGENCY, "service": name, **params}
        status, reply = await self.call("POST", CONFIG.integration_endpoint, json=body)
        assert status == 200, reply
        assert isinstance(reply, dict)
        return reply


@pytest.fixture
async def portal() -> AsyncIterator[Portal]:
    runner, url = await asyncio.wait_for(start_simulator("127.0.0.1", 0, CONFIG), DEADLINE)
    try:
        async with aiohttp.ClientSession(base_url=url, timeout=HTTP_TIMEOUT) as http:
            yield Portal(url, http)
    finally:
        await asyncio.wait_for(runner.cleanup(), DEADLINE)


@dataclass
class Receiver:
    """A stand-in for the agency's PP callback listener: records every notification, answers like the agency."""

    url: str = ""
    received: list[Any] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        notification = await request.json()
        self.received.append(notification)
        reply = {"MaLoi": "00", "MoTaLoi": "Thành công", "MaDoiTac": notification.get("MaDoiTac"),
                 "MaThamChieu": notification.get("MaThamChieu"), "ThoiGianGD": portal_time(datetime.now(PORTAL_TZ))}
        return web.json_response(signed(reply, REPLY_FIELDS, CONFIG.pp_secret))


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    app = web.Application()
    app.router.add_post("/pp/notify", found.handle)
    runner = web.AppRunner(app)
    await asyncio.wait_for(runner.setup(), DEADLINE)
    try:
        await asyncio.wait_for(web.TCPSite(runner, "127.0.0.1", 0).start(), DEADLINE)
        found.url = f"http://127.0.0.1:{runner.addresses[0][1]}/pp/notify"
        yield found
    finally:
        await asyncio.wait_for(runner.cleanup(), DEADLINE)


def attachment(content: bytes, name: str, part: str) -> dict[str, Any]:
    return {"TepDinhKemId": f"id-{part}", "TenTepDinhKem": name, "MaThanhPhanHoSo": part,
            "Base64": base64.b64encode(content).decode()}


def submission(**changes: Any) -> dict[str, Any]:
    item = {
        "MaHoSo": NUMBER, "MaTTHC": "1.009972.000.00.00.G12", "TenTTHC": "Cấp giấy phép xây dựng",
        "DonViXuLy": AGENCY, "NgayNopHoSo": "20260105143000", "PhienBan": "1", "TrangThaiHoSo": "1",
        "ChuHoSo": "Trần Thị Lan", "LoaiDoiTuong": "1",
        "DinhDanhCHS": [{"LoaiDinhDanh": "1", "SoDinhDanh": "001190000001"}],
        "DiaChiChuHoSo": "Số 5, phố Huế, Hà Nội", "TrichYeuHoSo": "Đề nghị cấp giấy phép xây dựng nhà ở riêng lẻ",
        "TaiLieuNop": [attachment(b"%PDF-1.7 don" * 50, "Đơn đề nghị.pdf", "TP01"),
                       attachment(bytes(range(256)) * 40, "Bản vẽ.pdf", "TP03")],
    }
    item.update(changes)
    return item


async def test_a_submission_is_listed_looked_up_fetched_and_acknowledged(portal: Portal) -> None:
    status, reply = await portal.call("POST", "/_sim/submissions", json={"submissions": [
        submission(), submission(MaHoSo=f"{AGENCY}-260105-0002", _visible_in_seconds=3600)]})
    assert (status, reply) == (201, {"registered": 2})
    await portal.login()

    listed = await portal.service("DanhSachHoSo", donViXuLy=AGENCY, ngayNhan1="2026-01-05", ngayNhan2="2026-01-05",
                                  trang=1, soLuong=100)
    assert listed["error_code"] == "0"
    assert listed["message"] == "Thành công"
    assert listed["result"] == [{"MaHoSo": NUMBER, "MaTTHC": "1.009972.000.00.00.G12", "NgayNopHoSo": "20260105143000",
                                 "TrangThaiHoSo": "1", "PhienBan": "1"}]  # the other one shows in an hour

    looked_up = await portal.service("TraCuuHoSo", mahoso=NUMBER)
    [record] = looked_up["result"]
    assert record["PhienBan"] == "1"
    assert record["DinhDanhCHS"] == [{"LoaiDinhDanh": "1", "SoDinhDanh": "001190000001"}]
    assert all("Base64" not in described for described in record["TaiLieuNop"])
    for described in record["TaiLieuNop"]:
        fetched = await portal.service("LayTaiLieuHoSo", duongdanteptin=described["DuongDanTaiTepTin"])
        assert fetched["error_code"] == "0"
        [file] = fetched["TepTinDinhKem"]
        content = base64.b64decode(file["Base64"])
        assert file["TenTep"] == described["TenTepDinhKem"]
        assert hashlib.sha256(content).hexdigest() == described["MaBam"]
        assert len(content) == described["KichThuoc"]
    missing = await portal.service("LayTaiLieuHoSo", duongdanteptin="tailieu/none")
    assert missing["error_code"] == "-1"

    for _ in range(2):
        acknowledged = await portal.service("CapNhatDaNhanHoSo", maHoSo=NUMBER, phienBan="1", daNhan=True,
                                            maHoSoDonVi="BXD-2026-000077")
        assert acknowledged == {"error_code": "0", "message": "Thành công", "result": None}
    never = await portal.service("CapNhatDaNhanHoSo", maHoSo=NUMBER, phienBan="2", daNhan=True)
    assert never["error_code"] == "-1"

    reported = await portal.service("DongBoTrangThaiHoSo", type="2", data={
        "MaHoSo": NUMBER, "MaHoSoDonVi": "BXD-2026-000077", "TrangThaiHoSo": "2"})
    assert reported["error_code"] == "0"

    status, view = await portal.call("GET", f"/_sim/submissions/{NUMBER}")
    assert status == 200
    assert view["current"] == "1"
    assert view["acknowledged"] == {"1": 2}
    assert view["acknowledged_by"] == "BXD-2026-000077"
    assert view["duplicate_acks"] == 1
    assert view["status_back"] == [{"MaHoSo": NUMBER, "MaHoSoDonVi": "BXD-2026-000077", "TrangThaiHoSo": "2"}]
    status, views = await portal.call("GET", "/_sim/submissions")
    assert views[f"{AGENCY}-260105-0002"]["current"] is None
    assert (await portal.call("GET", "/_sim/submissions/nobody"))[0] == 404

    status, refused = await portal.call("POST", "/_sim/submissions", json={"submissions": [submission()]})
    assert status == 400
    assert refused["error"].startswith("submissions[0].PhienBan")

    assert (await portal.call("POST", "/_sim/reset"))[0] == 200
    assert (await portal.call("GET", "/_sim/submissions")) == (200, {})


async def test_generated_traffic_is_listed_page_by_page_once_each(portal: Portal) -> None:
    status, made = await portal.call("POST", "/_sim/submissions/generate", json={
        "count": 120, "agency": AGENCY, "seed": 5, "late_ratio": 0.2, "amend_ratio": 0.2,
        "large_file_ratio": 0.05, "large_file_bytes": 100_000, "day": "2026-01-05"})
    assert status == 201
    assert made["generated"] == 120
    assert made["revisions"] >= 120
    await portal.login()

    numbers: list[str] = []
    for page in range(1, 10):
        listed = await portal.service("DanhSachHoSo", donViXuLy=AGENCY, ngayNhan1="2026-01-04",
                                      ngayNhan2="2026-01-05", trang=page, soLuong=50)
        numbers += [entry["MaHoSo"] for entry in listed["result"]]
        if len(listed["result"]) < 50:
            break
    assert sorted(numbers) == sorted(set(numbers))
    assert len(numbers) == 120

    refused = await portal.service("DanhSachHoSo", donViXuLy=AGENCY, ngayNhan1="2026-01-05", ngayNhan2="2026-01-04")
    assert refused == {"error_code": "-1", "message": "ngayNhan2: must not be before ngayNhan1"}
    status, bad = await portal.call("POST", "/_sim/submissions/generate", json={"count": -1, "agency": AGENCY})
    assert status == 400
    assert "count" in bad["error"]


async def test_the_payment_platform_answers_queries_and_posts_notifications(
    portal: Portal, receiver: Receiver
) -> None:
    status, _ = await portal.call("POST", "/_sim/payments", json={"payments": [
        {"MaThamChieu": "BXD-2026-000077-1", "SoTien": 500_000, "outcome": "paid", "pending_queries": 1}]})
    assert status == 201

    message = signed({"LoaiBanTin": "QUERY", "PhienBan": "1.0", "MaDoiTac": CONFIG.pp_partner_code,
                      "MaThamChieu": "BXD-2026-000077-1", "ThoiGianGD": portal_time(datetime.now(PORTAL_TZ))},
                     QUERY_FIELDS, CONFIG.pp_secret)
    states = []
    for _ in range(2):
        status, reply = await portal.call("POST", CONFIG.pp_query_path, json=message)
        assert status == 200
        verify(reply, QUERY_REPLY_FIELDS, CONFIG.pp_secret)
        states.append(reply["TrangThaiGD"])
    assert states == ["3", "1"]
    status, refused = await portal.call("POST", CONFIG.pp_query_path, data=b"not json",
                                        headers={"Content-Type": "application/json"})
    assert (status, refused["MaLoi"]) == (200, "99")

    status, answer = await portal.call("POST", "/_sim/payments/BXD-2026-000077-1/callback", json={"url": receiver.url})
    assert status == 200, answer
    assert answer["status"] == 200
    assert receiver.received == [answer["sent"]]
    verify(answer["sent"], NOTIFICATION_FIELDS, CONFIG.pp_secret)
    assert (answer["sent"]["MaLoi"], answer["sent"]["SoTien"]) == ("00", "500000")
    verify(answer["reply"], REPLY_FIELDS, CONFIG.pp_secret)
    assert answer["reply"]["MaThamChieu"] == "BXD-2026-000077-1"

    status, spoilt = await portal.call("POST", "/_sim/payments/BXD-2026-000077-1/callback",
                                       json={"url": receiver.url, "checksum": "wrong", "SoTien": 1})
    assert status == 200
    assert receiver.received[-1] == spoilt["sent"]
    with pytest.raises(ChecksumRefused):
        verify(spoilt["sent"], NOTIFICATION_FIELDS, CONFIG.pp_secret)

    assert (await portal.call("POST", "/_sim/payments/NOBODY/callback", json={"url": receiver.url}))[0] == 404
    status, payments = await portal.call("GET", "/_sim/payments")
    assert payments["BXD-2026-000077-1"]["queries"] == 2
    assert payments["BXD-2026-000077-1"]["callbacks"] == 2
    assert payments["BXD-2026-000077-1"]["outcome"] == "paid"


async def test_a_notification_nobody_receives_is_reported_not_raised(portal: Portal) -> None:
    await portal.call("POST", "/_sim/payments", json={"payments": [
        {"MaThamChieu": "R1", "SoTien": 1000, "outcome": "failed"}]})
    # A port just released by a listener is closed: the connection is refused at once.
    probe = web.AppRunner(web.Application())
    await asyncio.wait_for(probe.setup(), DEADLINE)
    await asyncio.wait_for(web.TCPSite(probe, "127.0.0.1", 0).start(), DEADLINE)
    port = probe.addresses[0][1]
    await asyncio.wait_for(probe.cleanup(), DEADLINE)

    status, answer = await portal.call("POST", "/_sim/payments/R1/callback", json={"url": f"http://127.0.0.1:{port}/"})
    assert status == 502
    assert "not delivered" in answer["error"]
    assert answer["sent"]["MaLoi"] == "12"
