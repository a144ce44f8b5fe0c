"""``portal-sync simulate-portal`` with chaos flags, as its own process: the flags are the profile in force."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from typing import Any

import aiohttp

from connector.dev.simulator.chaos import parse_profile

DEADLINE = 30  # seconds; bounds every await on the child process or the network


async def test_chaos_flags_become_the_profile_in_force_and_stay_after_a_reset() -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "connector", "simulate-portal", "--listen", "127.0.0.1:0",
        "--chaos-seed", "1", "--error-rate", "0.3", "--error-rate", "login=0.05", "--latency-ms", "uniform:1:5",
        "--throttle-rps", "500", "--throttle-retry-after", "2", "--burst", "10:2", "--outage", "30:20",
        "--outage", "90:5:reset", "--apply-then-timeout-rate", "0.1", "--hang-seconds", "20",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert child.stdout is not None
        listening = (await asyncio.wait_for(child.stdout.readline(), DEADLINE)).decode()
        found = re.search(r"listening on (http://\S+)", listening)
        assert found, listening
        chaos_line = (await asyncio.wait_for(child.stdout.readline(), DEADLINE)).decode()
        assert chaos_line.startswith("chaos: {")
        expected = parse_profile({
            "seed": 1,
            "error_rate": {"*": 0.3, "login": 0.05},
            "latency": {"distribution": "uniform", "min_ms": 1, "max_ms": 5},
            "throttle": {"requests_per_second": 500, "retry_after_seconds": 2},
            "burst": {"every_seconds": 10, "for_seconds": 2, "retry_after_seconds": 2},
            "outages": [
                {"start_in_seconds": 30, "duration_seconds": 20},
                {"start_in_seconds": 90, "duration_seconds": 5, "mode": "reset"},
            ],
            "apply_then_timeout_rate": 0.1,
            "hang_seconds": 20,
        })

        async def call(method: str, path: str) -> Any:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=DEADLINE)) as http,
                http.request(method, found.group(1) + path) as response,
            ):
                assert response.status == 200
                return await response.json()

        assert parse_profile(await call("GET", "/_sim/chaos")) == expected
        await call("POST", "/_sim/reset")
        assert parse_profile(await call("GET", "/_sim/chaos")) == expected
        await call("DELETE", "/_sim/chaos")
        assert parse_profile(await call("GET", "/_sim/chaos")) == parse_profile({})
    finally:
        if child.returncode is None:
            child.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(child.wait(), DEADLINE) == 0
