from collections.abc import AsyncIterator

import pytest

from connector.simulator.app import start_simulator
from tests.integration.pipeline_harness import SIM


@pytest.fixture
async def portal_url() -> AsyncIterator[str]:
    """The portal simulator on a free loopback port, fresh for each test."""
    runner, url = await start_simulator("127.0.0.1", 0, SIM)
    yield url
    await runner.cleanup()
