"""The rate limit counts every HTTP request, not only the calls the pipeline makes: the login, the re-send after
an expired session and a create re-sent as an update keep to it too. Here every session dies after one use, so
each call is three requests (the call, the login, the re-send), over both transports."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from connector.config import PortalSettings
from connector.dev.simulator.app import start_simulator
from connector.dev.simulator.state import SimulatorConfig
from connector.observability import Metrics
from connector.portal.client import PortalClient
from connector.portal.gateway import PortalGateway
from tests.integration.pipeline_harness import HTTP_TIMEOUT, TRANSPORTS, portal_config

RATE = 40  # requests per second
CALLS = 20


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_logins_and_re_sends_keep_to_the_rate_limit(transport: str) -> None:
    runner, url = await start_simulator("127.0.0.1", 0, SimulatorConfig(session_max_uses=1))
    try:
        config = portal_config(url, transport)
        # One call at a time: each meets the expired session once (concurrent callers would share logins).
        config["rate_limit"] = {"requests_per_second": RATE, "max_concurrent_requests": 1}
        settings = PortalSettings(**config)
        client = PortalClient(settings)
        gateway = PortalGateway(client, settings, Metrics())
        try:
            await client.ensure_session()
            missing = [f"000.00.01.G12-261204-{n:04d}" for n in range(CALLS)]
            found = await asyncio.wait_for(asyncio.gather(*(gateway.lookup(no) for no in missing)), 60)
        finally:
            await client.close()
        assert found == [None] * CALLS
        async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http:
            async with http.get(f"{url}/_sim/rate") as reply:
                rate = await reply.json()
            async with http.get(f"{url}/_sim/stats") as reply:
                stats = await reply.json()
    finally:
        await runner.cleanup()
    # Each call met an expired session once: the logins really happened, and were paced with the rest.
    assert stats["logins"]["ok"] >= CALLS, stats
    assert rate["requests"] >= 3 * CALLS - 2, rate  # the first call used the session logged in beforehand
    assert rate["max_per_second"] <= RATE + 1, rate
