"""Causes that every event would meet — the adapter down, our credentials refused — must leave the backlog
in Kafka (nothing dead-lettered, nothing committed past it) and drain once the cause is gone."""

from __future__ import annotations

import asyncio

import pytest

from connector.service import Service
from tests.factories import encode, event_dict
from tests.integration.pipeline_harness import (
    Topics,
    daemon_config,
    inject_fault,
    portal_dossiers,
    run_until_committed,
    unique_group,
    version_in,
    wait_until,
)
from tests.kafkatools import committed_offsets, consume_all, produce

pytestmark = pytest.mark.broker
FAST_RETRIES = {"initial_backoff_seconds": 0.01, "max_backoff_seconds": 0.2}
# The breaker still opens and probes, but a failed probe costs 0.2 s, not the 5 s default: 25 failing
# answers in a row take ~80 s to wait out with the default, a few seconds with this.
FAST_BREAKER = {"open_seconds": 0.2}


@pytest.fixture
async def stream(topics) -> Topics:
    return Topics(await topics.create("dossier.events", partitions=3),
                  await topics.create("dossier.events.dlq", partitions=1), unique_group())


def ten_dossiers() -> list[tuple[bytes, bytes]]:
    return [encode(event_dict(no=f"000.00.01.G12-201005-{n:04d}", version=v))
            for v in (1, 2) for n in range(10)]


def settings_for(bootstrap, portal_url, stream, tmp_path, *, push=None, **portal):
    from connector.config import load_settings

    config = daemon_config(bootstrap, portal_url, stream, tmp_path)
    config["portal"].update(portal, retry=FAST_RETRIES, circuit_breaker=FAST_BREAKER)
    if push is not None:
        config["push"] = push
    return load_settings(None, **config)


async def assert_dlq_empty(bootstrap: str, topic: str) -> None:
    # A sentinel written now must be the first record there: nothing was dead-lettered before it.
    await produce(bootstrap, topic, [(b"sentinel", b"sentinel")])
    first = (await consume_all(bootstrap, topic, count=1, timeout=30))[0]
    assert first.key == b"sentinel", f"something was dead-lettered: {dict(first.headers)}"


def retries(service: Service, reason: str) -> float:
    return service.metrics.registry.get_sample_value(
        "portal_sync_portal_retries_total", {"service": "DongBoHoSoMC", "reason": reason}) or 0


async def test_an_adapter_outage_leaves_the_backlog_in_kafka_and_it_drains_afterwards(
    kafka_bootstrap, stream, portal_url, tmp_path
) -> None:
    messages = ten_dossiers()
    expected = await produce(kafka_bootstrap, stream.events, messages)
    # 25 failing answers in a row: the calls must wait them out, and dead-letter nothing.
    await inject_fault(portal_url, status=503, times=25)

    settings = settings_for(kafka_bootstrap, portal_url, stream, tmp_path)
    service, _ = await run_until_committed(settings, kafka_bootstrap, stream, expected)

    assert retries(service, "http_503") >= 2
    await assert_dlq_empty(kafka_bootstrap, stream.dead_letter)
    portal = await portal_dossiers(portal_url)
    assert len(portal) == 10
    assert all(version_in(d["record"]) == 2 for d in portal.values())


async def test_refused_credentials_commit_nothing_and_dead_letter_nothing(
    kafka_bootstrap, stream, portal_url, tmp_path
) -> None:
    messages = ten_dossiers()
    expected = await produce(kafka_bootstrap, stream.events, messages)

    # Every unit is still waiting for a login at the stop: the grace period runs out whatever its length,
    # and what was unfinished stays uncommitted. A short one spares the test the 30 s default.
    wrong = settings_for(kafka_bootstrap, portal_url, stream, tmp_path, password="not-the-password",
                         push={"shutdown_grace_seconds": 1})
    async with Service(wrong) as service:
        stop = asyncio.Event()
        running = asyncio.create_task(service.run(stop))
        try:
            async def refused_twice() -> bool:
                return retries(service, "login_failed") >= 2

            await wait_until(refused_twice, timeout=60, what="two retries after a refused login")
        finally:
            stop.set()
            await asyncio.wait_for(running, timeout=60)
    committed = await committed_offsets(kafka_bootstrap, stream.group, stream.events, sorted(expected))
    assert all(offset == 0 for offset in committed.values()), committed  # the topic is fresh: 0 = nothing
    assert await portal_dossiers(portal_url) == {}

    fixed = settings_for(kafka_bootstrap, portal_url, stream, tmp_path)
    await run_until_committed(fixed, kafka_bootstrap, stream, expected)
    await assert_dlq_empty(kafka_bootstrap, stream.dead_letter)
    assert len(await portal_dossiers(portal_url)) == 10
