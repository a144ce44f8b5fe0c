import asyncio
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from connector.dev.simulator.app import start_simulator
from tests.integration.pipeline_harness import SIM, PortalUrl


@pytest.fixture
def transport(request: pytest.FixtureRequest) -> str:
    """The transport the daemon speaks to the simulator: "rest" unless a module parametrizes it
    (``pytestmark = over_both_transports``)."""
    return str(getattr(request, "param", "rest"))


@pytest.fixture
async def portal_url(transport: str) -> AsyncIterator[PortalUrl]:
    """The portal simulator on a free loopback port, fresh for each test; it serves REST and SOAP, and the URL
    carries the transport the test's daemon is configured with (``daemon_config`` reads it)."""
    runner, url = await start_simulator("127.0.0.1", 0, SIM)
    yield PortalUrl(url, transport)
    await runner.cleanup()


@pytest.fixture
async def start_daemon() -> AsyncIterator[Callable[[Path, Path], Awaitable[asyncio.subprocess.Process]]]:
    """Start `portal-sync run` as its own process, stderr appended to a log; whatever a failing test
    leaves running is killed."""
    started: list[asyncio.subprocess.Process] = []

    async def start(config: Path, log: Path) -> asyncio.subprocess.Process:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_SYNC__")}
        with log.open("ab") as stderr:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "connector", "run", "--config", str(config),
                stdout=asyncio.subprocess.DEVNULL, stderr=stderr, env=env,
            )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.returncode is None:
            process.kill()
            await asyncio.wait_for(process.wait(), timeout=10)
