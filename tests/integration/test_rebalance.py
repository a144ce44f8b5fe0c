"""A second instance joins the consumer group mid-stream: partitions move between them, the one giving a
partition up finishes and commits its in-flight work first, and nothing is lost, repeated or regressed."""

from __future__ import annotations

import asyncio

import pytest

from connector.config import load_settings
from connector.dev.samples import generate_events
from connector.service import Service
from tests.integration.pipeline_harness import (
    Topics,
    assert_portal_holds_newest,
    daemon_config,
    unique_group,
    wait_until,
)
from tests.kafkatools import committed_offsets, produce, wait_for_committed

pytestmark = pytest.mark.broker


def synced(service: Service) -> float:
    return sum(service.metrics.registry.get_sample_value(
        "portal_sync_event_outcomes_total", {"outcome": "synced", "reason": reason}) or 0
        for reason in ("created", "updated", "step"))


@pytest.fixture
async def stream(topics) -> Topics:
    return Topics(await topics.create("dossier.events", partitions=3),
                  await topics.create("dossier.events.dlq", partitions=1), unique_group())


async def test_a_second_instance_takes_over_partitions_without_losing_or_repeating_work(
    kafka_bootstrap, stream, portal_url, tmp_path
) -> None:
    messages = generate_events(dossiers=120, seed=23, include_bad=False)
    expected_offsets = await produce(kafka_bootstrap, stream.events, messages)

    def slow_settings(state_dir):
        # Little in flight, small batches, a low request rate: the backlog stays in Kafka long enough
        # for the group to rebalance in the middle of it.
        config = daemon_config(kafka_bootstrap, portal_url, stream, state_dir)
        config["push"] = {"max_batch_records": 5, "linger_ms": 0, "max_in_flight_events": 20}
        config["portal"]["rate_limit"] = {"requests_per_second": 40}
        return load_settings(None, **config)

    stop = asyncio.Event()
    # One shared ledger, as instances sharing work have (PostgreSQL in production): the new owner of a
    # partition knows what the old one already pushed.
    async with Service(slow_settings(tmp_path)) as first:
        running = [asyncio.create_task(first.run(stop))]

        async def first_is_working() -> bool:
            return synced(first) >= 50

        await wait_until(first_is_working, timeout=60, what="the first instance to sync 50 events")
        async with Service(slow_settings(tmp_path)) as second:
            running.append(asyncio.create_task(second.run(stop)))
            try:
                async def second_is_working() -> bool:
                    return synced(second) > 0

                await wait_until(second_is_working, timeout=90, what="the second instance to sync an event")
                await wait_for_committed(kafka_bootstrap, stream.group, stream.events, expected_offsets,
                                         timeout=180)
            finally:
                stop.set()
                await asyncio.wait_for(asyncio.gather(*running), timeout=60)

    await assert_portal_holds_newest(portal_url, messages)


def finished(service: Service) -> float:
    return sum(sample.value for metric in service.metrics.registry.collect()
               if metric.name == "portal_sync_event_outcomes" for sample in metric.samples
               if sample.name.endswith("_total"))


async def test_partitions_given_up_are_committed_first_so_the_new_owner_redoes_nothing(
    kafka_bootstrap, stream, portal_url, tmp_path
) -> None:
    messages = generate_events(dossiers=40, seed=29, include_bad=False)
    expected_offsets = await produce(kafka_bootstrap, stream.events, messages)

    def settings(state_dir):
        config = daemon_config(kafka_bootstrap, portal_url, stream, state_dir)
        # No periodic commit within the test: only the hand-over (or a stop) can commit.
        config["push"] = {"commit_interval_ms": 3_600_000}
        return load_settings(None, **config)

    stop = asyncio.Event()
    async with Service(settings(tmp_path / "first")) as first:
        running = [asyncio.create_task(first.run(stop))]
        try:
            async def all_finished() -> bool:
                return finished(first) >= len(messages)

            await wait_until(all_finished, timeout=60, what="the first instance to finish every event")
            assert await committed_offsets(kafka_bootstrap, stream.group, stream.events,
                                           sorted(expected_offsets)) == {}, "committed before any hand-over"
            # Its own ledger: the second instance could not tell what the first did, except by the offsets.
            async with Service(settings(tmp_path / "second")) as second:
                running.append(asyncio.create_task(second.run(stop)))
                try:
                    await wait_for_committed(kafka_bootstrap, stream.group, stream.events, expected_offsets,
                                             timeout=60)
                    assert finished(second) == 0
                finally:
                    stop.set()
                    await asyncio.wait_for(asyncio.gather(*running), timeout=60)
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*running), timeout=60)
    await assert_portal_holds_newest(portal_url, messages)
