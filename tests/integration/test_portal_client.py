"""PortalClient against the simulated adapter over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import structlog
from pydantic import SecretStr

from connector.config import PortalSettings
from connector.dev.simulator.app import MAX_REQUEST_BYTES, SIMULATOR_STATE, start_simulator
from connector.dev.simulator.state import Fault, SimulatorConfig, SimulatorState
from connector.portal import client as rest
from connector.portal.client import PortalClient
from connector.portal.errors import LoginFailed, PortalRejected, PortalUnavailable, SessionExpired
from tests.factories import portal_record

AGENCY = "000.00.01.H22"
NUMBER = f"{AGENCY}-240101-0001"
PASSWORD = "s3cret-Passw0rd-!"
DEADLINE = 10  # seconds; bounds every network await in this module


@dataclass
class Simulator:
    url: str
    state: SimulatorState

    def settings(self, **changes: Any) -> PortalSettings:
        values: dict[str, Any] = {
            "adapter_url": self.url,
            "username": "portal-sync",
            "password": SecretStr(PASSWORD),
            "madonvi": AGENCY,
            "timeout_seconds": 5,
        }
        values.update(changes)
        return PortalSettings(**values)


StartSimulator = Callable[..., Awaitable[Simulator]]


@pytest.fixture
async def start_sim() -> AsyncIterator[StartSimulator]:
    runners: list[aiohttp.web.AppRunner] = []

    async def start(**config: Any) -> Simulator:
        runner, url = await asyncio.wait_for(
            start_simulator("127.0.0.1", 0, SimulatorConfig(password=PASSWORD, **config)), DEADLINE
        )
        runners.append(runner)
        return Simulator(url, runner.app[SIMULATOR_STATE])

    yield start
    for runner in runners:
        await asyncio.wait_for(runner.cleanup(), DEADLINE)


@pytest.fixture
async def sim(start_sim: StartSimulator) -> Simulator:
    return await start_sim()


@pytest.fixture
async def client(sim: Simulator) -> AsyncIterator[PortalClient]:
    async with PortalClient(sim.settings()) as portal:
        yield portal


def record(number: str = NUMBER, **changes: Any) -> dict[str, Any]:
    # A name in the record: the log tests check it never reaches a log line.
    return portal_record(number, **{"ChuHoSo": "Nguyễn Văn Riêng Tư", **changes})


def step(number: str = NUMBER, content: str = "Tiếp nhận hồ sơ") -> dict[str, Any]:
    return {
        "MaHoSo": number,
        "NguoiXuLy": "Trần Thị B",
        "ChucDanh": "Chuyên viên",
        "ThoiDiemXuLy": "20240102090000",
        "PhongBanXuLy": "Một cửa",
        "NoiDungXuLy": content,
        "TrangThai": "4",
        "NgayBatDau": "20240101080000",
        "NgayKetThucTheoQuyDinh": "",
    }


async def within(call: Awaitable[Any]) -> Any:
    return await asyncio.wait_for(call, DEADLINE)


async def test_login(sim: Simulator, client: PortalClient) -> None:
    await within(client.login())
    assert sim.state.stats()["logins"] == {"ok": 1}
    assert await within(client.lookup(NUMBER)) is None
    assert sim.state.stats()["logins"] == {"ok": 1}  # the session is reused


async def test_create_then_lookup(sim: Simulator, client: PortalClient) -> None:
    assert await within(client.push_dossiers([record()], updating=False)) is False
    assert await within(client.lookup(NUMBER)) == record()
    assert sim.state.snapshot()[NUMBER]["pushes"] == 1


async def test_create_of_an_existing_dossier_is_resent_as_an_update(
    sim: Simulator, client: PortalClient
) -> None:
    await within(client.push_dossiers([record()], updating=False))
    assert await within(client.push_dossiers([record(TrangThaiHoSo="4")], updating=False)) is True
    stored = sim.state.snapshot()[NUMBER]
    assert stored["pushes"] == 2
    assert stored["record"]["TrangThaiHoSo"] == "4"
    assert sim.state.stats()["calls"]["DongBoHoSoMC"] == {"ok": 2, "already_exists": 1}


async def test_an_update_of_a_missing_dossier_creates_it(sim: Simulator, client: PortalClient) -> None:
    assert await within(client.push_dossiers([record()], updating=True)) is True
    assert sim.state.snapshot()[NUMBER]["pushes"] == 1


async def test_an_invalid_record_is_rejected_with_the_rule(client: PortalClient) -> None:
    with pytest.raises(PortalRejected) as caught:
        await within(client.push_dossiers([record(), record(GhiChu="x" * 2001)], updating=False))
    assert caught.value.reason == "portal_rejected"
    assert caught.value.message == "data[1].GhiChu: longer than 2000 characters"
    assert await within(client.lookup(NUMBER)) is None


async def test_a_step_for_a_missing_dossier_is_rejected(client: PortalClient) -> None:
    with pytest.raises(PortalRejected) as caught:
        await within(client.push_progress([step()]))
    assert caught.value.message == f"Hồ sơ {NUMBER} không tồn tại"
    assert caught.value.error_code == "-1"


async def test_steps_of_an_existing_dossier_are_stored_in_order(sim: Simulator, client: PortalClient) -> None:
    await within(client.push_dossiers([record()], updating=False))
    await within(client.push_progress([step(content="một"), step(content="hai")]))
    await within(client.push_progress([step(content="ba")]))
    assert [s["NoiDungXuLy"] for s in sim.state.snapshot()[NUMBER]["steps"]] == ["một", "hai", "ba"]


async def test_empty_pushes_make_no_call(sim: Simulator, client: PortalClient) -> None:
    assert await within(client.push_dossiers([], updating=False)) is False
    await within(client.push_progress([]))
    assert sim.state.stats() == {"logins": {}, "calls": {}, "dstcode": {}}


async def test_an_expired_session_is_renewed_once(start_sim: StartSimulator) -> None:
    sim = await start_sim(session_max_uses=1)
    async with PortalClient(sim.settings()) as client:
        assert await within(client.lookup(NUMBER)) is None
        assert await within(client.lookup(NUMBER)) is None  # the first session is used up: 401, login, resend
    assert sim.state.stats()["logins"] == {"ok": 2}
    assert sim.state.stats()["calls"]["TraCuuHoSo"] == {"ok": 2, "session_expired": 1}


async def test_a_session_that_stays_expired_fails_without_looping(start_sim: StartSimulator) -> None:
    sim = await start_sim(session_max_uses=0)
    async with PortalClient(sim.settings()) as client:
        with pytest.raises(SessionExpired) as caught:
            await within(client.lookup(NUMBER))
    assert caught.value.kind == "retryable"
    assert sim.state.stats()["logins"] == {"ok": 2}
    assert sim.state.stats()["calls"]["TraCuuHoSo"] == {"session_expired": 2}


async def test_concurrent_calls_share_one_login(sim: Simulator, client: PortalClient) -> None:
    await within(asyncio.gather(*(client.lookup(f"{AGENCY}-{i}") for i in range(10))))
    assert sim.state.stats()["logins"] == {"ok": 1}
    assert sim.state.stats()["calls"]["TraCuuHoSo"] == {"ok": 10}


@pytest.mark.parametrize(("dstcode", "expected"), [("DST-H22", {"DST-H22": 2}), (None, {}), ("", {})])
async def test_dstcode_header_only_when_configured(
    sim: Simulator, dstcode: str | None, expected: dict[str, int]
) -> None:
    async with PortalClient(sim.settings(dstcode=dstcode)) as client:
        await within(client.lookup(NUMBER))  # login + lookup
    assert sim.state.stats()["dstcode"] == expected


async def test_a_server_error_is_unavailable(sim: Simulator, client: PortalClient) -> None:
    sim.state.add_fault(Fault(status=500, service="TraCuuHoSo"))
    with pytest.raises(PortalUnavailable) as caught:
        await within(client.lookup(NUMBER))
    assert caught.value.reason == "http_500"
    assert await within(client.lookup(NUMBER)) is None  # the fault is used up


async def test_throttling_carries_retry_after(sim: Simulator, client: PortalClient) -> None:
    sim.state.add_fault(Fault(status=429, retry_after="3"))
    with pytest.raises(PortalUnavailable) as caught:
        await within(client.push_dossiers([record()], updating=False))
    assert caught.value.reason == "http_429"
    assert caught.value.retry_after == 3.0


async def test_a_hanging_adapter_times_out(sim: Simulator) -> None:
    sim.state.add_fault(Fault(status=None, delay_seconds=60, service="DongBoHoSoMC"))
    async with PortalClient(sim.settings(timeout_seconds=0.3)) as client:
        with pytest.raises(PortalUnavailable) as caught:
            await within(client.push_dossiers([record()], updating=False))
    assert caught.value.reason == "timeout"
    assert caught.value.kind == "retryable"


async def test_an_unreachable_adapter_is_unavailable(sim: Simulator) -> None:
    # A port that was free a moment ago: bind, note it, close.
    runner, url = await within(start_simulator("127.0.0.1", 0, SimulatorConfig()))
    await within(runner.cleanup())
    async with PortalClient(sim.settings(adapter_url=url)) as client:
        with pytest.raises(PortalUnavailable) as caught:
            await within(client.login())
    assert caught.value.reason == "network"


async def test_plain_text_success_and_garbage(sim: Simulator, client: PortalClient) -> None:
    sim.state.add_fault(Fault(status=200, body="Thành công", service="CapNhatTienDoHoSoMC"))
    await within(client.push_progress([step()]))  # a proxy said "success" in plain text
    sim.state.add_fault(Fault(status=200, body="<html>gateway</html>", service="CapNhatTienDoHoSoMC"))
    with pytest.raises(PortalUnavailable) as caught:
        await within(client.push_progress([step()]))
    assert caught.value.reason == "malformed_reply"


async def test_wrong_password_fails_the_login(sim: Simulator) -> None:
    calls: list[tuple[str, str]] = []
    settings = sim.settings(password=SecretStr("wrong"))
    async with PortalClient(settings, observer=lambda s, r, _: calls.append((s, r))) as client:
        with pytest.raises(LoginFailed) as caught:
            await within(client.push_dossiers([record()], updating=False))
    assert caught.value.reason == "login_failed"
    assert caught.value.kind == "permanent"
    assert calls == [("login", "login_failed")]
    assert sim.state.stats()["calls"] == {}


async def test_a_login_outage_is_retryable_not_a_refusal(sim: Simulator, client: PortalClient) -> None:
    sim.state.add_fault(Fault(status=503, service="login"))
    with pytest.raises(PortalUnavailable) as caught:
        await within(client.login())
    assert caught.value.reason == "http_503"


async def test_the_observer_sees_every_http_call(sim: Simulator) -> None:
    seen: list[tuple[str, str, float]] = []
    async with PortalClient(sim.settings(), observer=lambda *call: seen.append(call)) as client:
        await within(client.push_dossiers([record()], updating=False))
        await within(client.push_dossiers([record()], updating=False))
        with pytest.raises(PortalRejected):
            await within(client.push_progress([step(f"{AGENCY}-missing")]))
    assert [(service, result) for service, result, _ in seen] == [
        ("login", "ok"),
        ("DongBoHoSoMC", "ok"),
        ("DongBoHoSoMC", "already_exists"),
        ("DongBoHoSoMC", "ok"),
        ("CapNhatTienDoHoSoMC", "portal_rejected"),
    ]
    assert all(isinstance(seconds, float) and 0 < seconds < DEADLINE for _, _, seconds in seen)


async def test_unknown_services_are_rejected(client: PortalClient) -> None:
    with pytest.raises(PortalRejected) as caught:
        await within(client.call("LayDanhSachTTHC", {}))
    assert "LayDanhSachTTHC" in caught.value.message


async def test_calls_without_an_agency_code_are_rejected(sim: Simulator) -> None:
    async with PortalClient(sim.settings(madonvi="")) as client:
        with pytest.raises(PortalRejected) as caught:
            await within(client.lookup(NUMBER))
    assert caught.value.message == "madonvi: required"


async def test_no_secret_token_or_record_content_in_logs(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fresh logger: one cached by an earlier structlog configuration would bypass the capture.
    monkeypatch.setattr(rest, "log", structlog.get_logger(rest.__name__))
    with structlog.testing.capture_logs() as events:
        async with PortalClient(sim.settings()) as client:
            await within(client.login())
            await within(client.push_dossiers([record()], updating=False))
            await within(client.push_dossiers([record()], updating=False))  # already exists → update
            sim.state.add_fault(Fault(status=500))
            with pytest.raises(PortalUnavailable):
                await within(client.lookup(NUMBER))
    tokens = list(sim.state.sessions)
    assert tokens
    assert {e["event"] for e in events} >= {"portal.call", "portal.create_switched_to_update"}
    logged = json.dumps(events, ensure_ascii=False, default=str)
    for secret in [PASSWORD, *tokens, "Nguyễn Văn Riêng Tư"]:
        assert secret not in logged


async def test_the_simulator_refuses_oversized_and_non_json_requests(sim: Simulator) -> None:
    timeout = aiohttp.ClientTimeout(total=DEADLINE)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        too_big = io.BytesIO(b" " * (MAX_REQUEST_BYTES + 1))
        headers = {"Content-Type": "application/json"}
        async with http.post(sim.url + "/api/integration", data=too_big, headers=headers) as response:
            assert response.status == 413
        async with http.post(
            sim.url + "/api/integration", data=b"{}", headers={"Content-Type": "text/plain"}
        ) as r:
            assert r.status == 415
        async with http.post(sim.url + "/api/integration", data=b"{nope", headers=headers) as response:
            assert response.status == 400
            assert (await response.json())["error_code"] == "-1"


async def test_the_simulator_inspection_endpoints(sim: Simulator, client: PortalClient) -> None:
    await within(client.push_dossiers([record()], updating=False))
    await within(client.push_progress([step()]))
    timeout = aiohttp.ClientTimeout(total=DEADLINE)
    async with aiohttp.ClientSession(base_url=sim.url, timeout=timeout) as http:
        async with http.get("/_sim/dossiers") as response:
            dossiers = await response.json()
        assert dossiers == {
            NUMBER: {"record": record(), "steps": [step()], "pushes": 1, "history": [record()]}
        }
        async with http.get(f"/_sim/dossiers/{NUMBER}") as response:
            assert (await response.json())["pushes"] == 1
        async with http.get("/_sim/dossiers/000.00.01.H22-none") as response:
            assert response.status == 404
        async with http.get("/_sim/stats") as response:
            assert await response.json() == {
                "logins": {"ok": 1},
                "calls": {"DongBoHoSoMC": {"ok": 1}, "CapNhatTienDoHoSoMC": {"ok": 1}},
                "dstcode": {},
            }
        async with http.post(
            "/_sim/faults", json={"status": 503, "times": 1, "retry_after": "2"}
        ) as response:
            assert response.status == 201
        async with http.post("/_sim/faults", json={"status": "later"}) as response:
            assert response.status == 400
        with pytest.raises(PortalUnavailable) as caught:
            await within(client.lookup(NUMBER))
        assert caught.value.retry_after == 2.0
        async with http.post("/_sim/reset") as response:
            assert response.status == 200
        async with http.get("/_sim/dossiers") as response:
            assert await response.json() == {}
