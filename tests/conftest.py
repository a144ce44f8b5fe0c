"""Fixtures shared by every test: a Kafka-protocol broker for the session, unique topics per test.

Set ``KAFKA_BOOTSTRAP_SERVERS`` to run the broker tests against a real Apache Kafka instead of the
local broker; topics and groups are uniquely named, so tests never see each other's data.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import structlog

from connector.dev.devbroker import LocalBroker, create_topics

# Longest tests first across the xdist workers (see tests/scheduling.py).
from tests.scheduling import (  # noqa: F401 - hooks, found here by pytest
    pytest_runtest_logreport,
    pytest_sessionfinish,
    pytest_xdist_make_scheduler,
)


@pytest.fixture(autouse=True)
def _structlog_as_it_was() -> Iterator[None]:
    """A command run in-process sets structlog up (its level, its stream): put the defaults back after each
    test, so ``capture_logs`` in the next one sees every level."""
    yield
    structlog.reset_defaults()


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """``host:port`` of the broker. Synchronous on purpose: no event loop has to outlive a test."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if external:
        yield external
        return
    broker = LocalBroker.start()
    try:
        yield broker.bootstrap_servers
    finally:
        broker.stop()


class TopicFactory:
    """Unique topic and group names for one test, and topic creation on the session's broker.

    ``name = await topics.create("dossier.events", partitions=3)`` gives e.g.
    ``dossier.events.3f9c0a1b2c4d``; ``topics.group_id()`` a consumer group no other test uses.
    """

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.suffix = uuid.uuid4().hex[:12]
        self.created: dict[str, int] = {}

    def name(self, base: str) -> str:
        """The unique name this test uses for ``base`` (the same base gives the same name)."""
        return f"{base}.{self.suffix}"

    def group_id(self, base: str = "portal-sync") -> str:
        return f"{base}-{self.suffix}"

    async def create(self, base: str, *, partitions: int = 1) -> str:
        """Create the topic for ``base`` with ``partitions`` partitions; return its unique name."""
        name = self.name(base)
        await create_topics(self.bootstrap, {name: partitions}, timeout=30.0)
        self.created[name] = partitions
        return name


@pytest.fixture
def topics(kafka_bootstrap: str) -> TopicFactory:
    return TopicFactory(kafka_bootstrap)
