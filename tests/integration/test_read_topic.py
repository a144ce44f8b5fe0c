"""Reading a whole topic outside any consumer group (what ``replay --from-dlq`` does with the DLQ)."""

from __future__ import annotations

import time

import pytest

from connector.config import KafkaSettings
from connector.kafka import read_topic
from tests.kafkatools import produce

pytestmark = pytest.mark.broker


async def test_every_record_there_now_is_read_once(kafka_bootstrap, topics) -> None:
    topic = await topics.create("dlq", partitions=3)
    sent = [(f"k{i}".encode(), f"v{i}".encode()) for i in range(200)]
    await produce(kafka_bootstrap, topic, sent)
    settings = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    read = [(r.key, r.value) async for batch in read_topic(settings, topic, wait_seconds=20) for r in batch]
    assert sorted(read) == sorted(sent)
    future = int(time.time() * 1000) + 3_600_000
    assert [r async for batch in read_topic(settings, topic, since_ms=future, wait_seconds=20) for r in batch] == []
    assert [r async for batch in read_topic(settings, "no-such-topic-here", wait_seconds=20) for r in batch] == []


async def test_empty_partitions_end_the_read_too(kafka_bootstrap, topics) -> None:
    topic = await topics.create("dlq", partitions=4)
    empty = await topics.create("dlq-empty", partitions=2)
    await produce(kafka_bootstrap, topic, [(b"only", b"one")])  # three partitions stay empty
    settings = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    assert [(r.key, r.value) async for batch in read_topic(settings, topic, wait_seconds=20) for r in batch] == [
        (b"only", b"one")]
    assert [r async for batch in read_topic(settings, empty, wait_seconds=20) for r in batch] == []
