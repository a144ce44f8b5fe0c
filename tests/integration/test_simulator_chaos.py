"""The simulator's chaos knobs and measurements over real HTTP on loopback, met by the real PortalClient."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from connector.config import PortalSettings
from connector.dev.simulator.app import SIMULATOR_STATE, start_simulator
from connector.dev.simulator.state import DOSSIER_FIELDS, SimulatorConfig, SimulatorState
from connector.portal.client import PortalClient
from connector.portal.errors import PortalUnavailable
from tests.factories import portal_record

AGENCY = "000.00.01.H22"
NUMBER = f"{AGENCY}-240101-0001"
DEADLINE = 10  # seconds; bounds every network await in this module
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=DEADLINE)


@dataclass
class Simulator:
    url: str
    state: SimulatorState
    runner: aiohttp.web.AppRunner

    def settings(self, **changes: Any) -> PortalSettings:
        values: dict[str, Any] = {
            "adapter_url": self.url,
            "username": "portal-sync",
            "password": SecretStr("secret"),
            "madonvi": AGENCY,
            "timeout_seconds": 5,
        }
        values.update(changes)
        return PortalSettings(**values)

    async def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        async with (
            aiohttp.ClientSession(base_url=self.url, timeout=HTTP_TIMEOUT) as http,
            http.request(method, path, **kwargs) as response,
        ):
            return response.status, await response.json()


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    runner, url = await asyncio.wait_for(start_simulator("127.0.0.1", 0, SimulatorConfig()), DEADLINE)
    try:
        yield Simulator(url, runner.app[SIMULATOR_STATE], runner)
    finally:
        await asyncio.wait_for(runner.cleanup(), DEADLINE)


async def within(call: Awaitable[Any]) -> Any:
    return await asyncio.wait_for(call, DEADLINE)


async def eventually(predicate: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll ``predicate`` until it holds; fail after DEADLINE naming what was awaited."""
    deadline = time.monotonic() + DEADLINE
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def test_chaos_is_put_read_back_and_cleared(sim: Simulator) -> None:
    status, normal = await sim.call("GET", "/_sim/chaos")
    assert status == 200
    assert normal["error_rate"] == {}
    assert normal["outages"] == []

    profile = {"seed": 1, "error_rate": 0.3, "latency": {"distribution": "fixed", "ms": 1},
               "throttle": {"requests_per_second": 500}, "outages": [{"start_in_seconds": 30, "duration_seconds": 20}]}
    status, stored = await sim.call("PUT", "/_sim/chaos", json=profile)
    assert status == 200
    assert stored["error_rate"] == {"*": 0.3}
    assert stored["throttle"] == {"requests_per_second": 500, "retry_after_seconds": 1}
    assert stored["outages"] == [{"start_in_seconds": 30.0, "duration_seconds": 20.0, "mode": "unavailable"}]
    assert stored["hang_seconds"] == 60.0
    assert await sim.call("GET", "/_sim/chaos") == (200, stored)

    for bad, named in [
        ({"error_rate": 1.5}, "error_rate.*"),
        ({"latency": {"distribution": "uniform", "min_ms": 1}}, "latency.uniform.max_ms: Field required"),
        ({"outage": []}, "outage: Extra inputs are not permitted"),
        ([1, 2], "Input should be a valid dictionary"),
    ]:
        status, answer = await sim.call("PUT", "/_sim/chaos", json=bad)
        assert status == 400, bad
        assert named in answer["error"]
    json_header = {"Content-Type": "application/json"}
    status, answer = await sim.call("PUT", "/_sim/chaos", data=b"{not json", headers=json_header)
    assert (status, answer) == (400, {"error": "the body must be a JSON object (a chaos profile)"})
    assert await sim.call("GET", "/_sim/chaos") == (200, stored)  # a refused profile changes nothing

    assert await sim.call("DELETE", "/_sim/chaos") == (200, normal)
    assert await sim.call("GET", "/_sim/chaos") == (200, normal)


async def test_chaos_errors_and_throttling_reach_the_client(sim: Simulator) -> None:
    async with PortalClient(sim.settings()) as client:
        await within(client.login())
        await sim.call("PUT", "/_sim/chaos", json={"error_rate": {"TraCuuHoSo": 1}, "error_statuses": [502]})
        with pytest.raises(PortalUnavailable) as caught:
            await within(client.lookup(NUMBER))
        assert caught.value.reason == "http_502"
        await within(client.push_dossiers([portal_record()], updating=True))  # only the lookup fails

        await sim.call("PUT", "/_sim/chaos", json={"throttle": {"requests_per_second": 0, "retry_after_seconds": 7}})
        with pytest.raises(PortalUnavailable) as caught:
            await within(client.lookup(NUMBER))
        assert (caught.value.reason, caught.value.retry_after) == ("http_429", 7.0)
    _, stats = await sim.call("GET", "/_sim/stats")
    assert stats["calls"]["TraCuuHoSo"] == {"chaos_502": 1, "throttled": 1}


async def test_rate_reports_calls_and_how_many_were_in_flight_at_once(sim: Simulator) -> None:
    assert await sim.call("GET", "/_sim/rate") == (
        200, {"requests": 0, "max_per_second": 0, "max_concurrent": 0, "in_flight": 0, "window_seconds": 1.0}
    )  # fmt: skip
    async with PortalClient(sim.settings(timeout_seconds=60)) as client:
        await within(client.login())
        # Answers held back long enough that the five calls are in flight together.
        await sim.call("PUT", "/_sim/chaos", json={"latency": {"distribution": "fixed", "ms": 60_000}})
        calls = [asyncio.create_task(client.lookup(f"{AGENCY}-{i}")) for i in range(5)]

        async def all_in_flight() -> bool:
            return (await sim.call("GET", "/_sim/rate"))[1]["in_flight"] == 5

        await eventually(all_in_flight, "five calls in flight")
        for call in calls:
            call.cancel()
        await asyncio.gather(*calls, return_exceptions=True)

    async def none_in_flight() -> bool:  # abandoned by the client, so no longer in flight here
        return (await sim.call("GET", "/_sim/rate"))[1]["in_flight"] == 0

    await eventually(none_in_flight, "the abandoned calls to end")
    _, rate = await sim.call("GET", "/_sim/rate")
    assert (rate["requests"], rate["max_concurrent"]) == (6, 5)  # the login and five lookups
    assert 1 <= rate["max_per_second"] <= 6

    assert (await sim.call("POST", "/_sim/reset"))[0] == 200
    _, rate = await sim.call("GET", "/_sim/rate")
    assert (rate["requests"], rate["max_per_second"], rate["max_concurrent"]) == (0, 0, 0)


async def test_a_reset_outage_drops_the_connection_and_the_client_sees_the_portal_unavailable(
    sim: Simulator,
) -> None:
    outage = {"start_in_seconds": 0, "duration_seconds": 600, "mode": "reset"}
    await sim.call("PUT", "/_sim/chaos", json={"outages": [outage]})
    async with PortalClient(sim.settings()) as client:
        with pytest.raises(PortalUnavailable) as caught:
            await within(client.login())
        assert caught.value.reason == "network"
        await sim.call("PUT", "/_sim/chaos", json={"outages": [{**outage, "mode": "unavailable"}]})
        with pytest.raises(PortalUnavailable) as caught:
            await within(client.login())
        assert caught.value.reason == "http_503"
        await sim.call("DELETE", "/_sim/chaos")
        await within(client.push_dossiers([portal_record()], updating=True))
    _, stats = await sim.call("GET", "/_sim/stats")
    assert stats["logins"] == {"outage_reset": 1, "outage": 1, "ok": 1}


async def test_apply_then_timeout_applies_the_push_but_the_client_times_out(sim: Simulator) -> None:
    await sim.call("PUT", "/_sim/chaos", json={"apply_then_timeout_rate": 1.0, "hang_seconds": 60})
    async with PortalClient(sim.settings(timeout_seconds=0.5)) as client:
        await within(client.login())
        with pytest.raises(PortalUnavailable) as caught:
            await within(client.push_dossiers([portal_record()], updating=True))
        assert caught.value.reason == "timeout"
    status, dossiers = await sim.call("GET", "/_sim/dossiers")
    assert status == 200
    assert dossiers[NUMBER]["record"] == portal_record()
    _, stats = await sim.call("GET", "/_sim/stats")
    assert stats["calls"]["DongBoHoSoMC"] == {"withheld": 1}


async def test_a_withheld_reply_is_released_when_the_simulator_stops(sim: Simulator) -> None:
    await sim.call("PUT", "/_sim/chaos", json={"apply_then_timeout_rate": 1.0, "hang_seconds": 3600})
    token = sim.state.login({"username": "portal-sync", "password": "secret"})["session"]
    body = {"session": token, "madonvi": AGENCY, "service": "DongBoHoSoMC", "isUpdating": "True",
            "data": [portal_record()]}

    async def push() -> int:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3 * DEADLINE)) as http,
            http.post(sim.url + "/api/integration", json=body) as response,
        ):
            return response.status

    waiting = asyncio.create_task(push())

    async def applied() -> bool:
        return NUMBER in sim.state.dossiers and sim.state.meter.in_flight == 1

    await eventually(applied, "the push to be applied and its reply withheld")
    started = time.monotonic()
    await within(sim.runner.cleanup())
    assert time.monotonic() - started < DEADLINE / 2
    outcome = await asyncio.gather(within(waiting), return_exceptions=True)
    assert isinstance(outcome[0], int | aiohttp.ClientError)  # answered late or cut off; never left hanging


async def test_dossier_views_carry_receipt_times_and_duplicates_on_request(sim: Simulator) -> None:
    before = time.time()
    async with PortalClient(sim.settings()) as client:
        await within(client.push_dossiers([portal_record()], updating=False))
        await within(client.push_dossiers([portal_record()], updating=True))
    after = time.time()

    _, plain = await sim.call("GET", "/_sim/dossiers")
    assert set(plain[NUMBER]) == {"record", "steps", "pushes", "history"}
    status, full = await sim.call("GET", "/_sim/dossiers", params={"fields": "all"})
    assert status == 200
    view = full[NUMBER]
    assert set(view) == set(DOSSIER_FIELDS)
    assert before <= view["first_received_at"] <= view["last_received_at"] <= after
    assert (view["pushes"], view["duplicate_pushes"], view["duplicate_steps"]) == (2, 1, 0)
    fields = {"fields": "record,last_received_at"}
    assert (await sim.call("GET", f"/_sim/dossiers/{NUMBER}", params=fields))[1] == {
        "record": portal_record(), "last_received_at": view["last_received_at"]
    }  # fmt: skip

    _, stats = await sim.call("GET", "/_sim/stats", params={"fields": "all"})
    assert (stats["duplicate_pushes"], stats["duplicate_steps"]) == (1, 0)
    assert "duplicate_pushes" not in (await sim.call("GET", "/_sim/stats"))[1]
    for path in ("/_sim/dossiers", f"/_sim/dossiers/{NUMBER}", "/_sim/stats"):
        status, answer = await sim.call("GET", path, params={"fields": "record,nope"})
        assert status == 400
        assert "choose from" in answer["error"]


async def test_the_dossier_list_is_streamed_whole(sim: Simulator) -> None:
    assert await sim.call("GET", "/_sim/dossiers") == (200, {})
    numbers = [f"{AGENCY}-240101-{i:05d}" for i in range(1234)]  # more than one piece
    for start in range(0, len(numbers), 100):
        sim.state.apply_push([portal_record(n) for n in numbers[start : start + 100]], "True")
    status, dossiers = await sim.call("GET", "/_sim/dossiers", params={"fields": "record,pushes"})
    assert status == 200
    assert list(dossiers) == numbers
    assert all(d == {"record": portal_record(n), "pushes": 1} for n, d in dossiers.items())
