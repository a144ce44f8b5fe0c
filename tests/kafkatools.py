"""Helpers for tests that talk to a real Kafka-protocol broker (the local one, or Apache Kafka).

Every network await here is bounded. "Everything consumed" is decided from the offsets the producer's
acknowledgements carry, never from ``consumer.end_offsets``: the local test broker answers ListOffsets
(LATEST) with the last batch's base offset + 1 instead of the high watermark once records were batched.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from connector.dev.samples import SampleMessage

Message = tuple[bytes | None, bytes | None] | SampleMessage
Headers = Sequence[tuple[str, bytes]]

REQUEST_TIMEOUT = 10.0  # one broker round trip
PRODUCE_TIMEOUT = 120.0  # a whole produce() call, start to last acknowledgement
POLL_INTERVAL = 0.1

# Consumer group timing for the tests' members. The local broker holds each JoinGroup for half the session
# timeout (whole seconds), and a member that stopped in generation 0 blocks its successor until its session
# expires: with 2 s a group forms in ~1 s, a rebalance takes ~2 s, a successor waits ~4 s (3 s, 4 s and
# 11 s with 6 s). Apache Kafka refuses sessions under group.min.session.timeout.ms (6 s by default), so
# against an external broker the tests keep 6 s. Heartbeats at a quarter of the session.
LOCAL_BROKER = not os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
SESSION_TIMEOUT_MS = 2000 if LOCAL_BROKER else 6000
HEARTBEAT_INTERVAL_MS = SESSION_TIMEOUT_MS // 4
GROUP_TIMING = {"session_timeout_ms": SESSION_TIMEOUT_MS, "heartbeat_interval_ms": HEARTBEAT_INTERVAL_MS}


def _key_value(message: Message) -> tuple[bytes | None, bytes | None]:
    if isinstance(message, SampleMessage):
        return message.key, message.value
    key, value = message
    return key, value


async def produce(
    bootstrap: str,
    topic: str,
    messages: Iterable[Message],
    *,
    headers: Headers | None = None,
    timestamp_ms: int | None = None,
) -> dict[int, int]:
    """Publish ``messages`` in order (key → partition as Kafka's default partitioner decides), stamped
    ``timestamp_ms`` when given (the producer's clock otherwise).

    Returns, per partition written to, the offset after the last record produced, taken from the
    broker's acknowledgements: the value a consumer group's committed offset must reach once
    everything was processed.
    """
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", request_timeout_ms=30_000)
    async with asyncio.timeout(PRODUCE_TIMEOUT):
        await producer.start()
        try:
            pending = [
                await producer.send(topic, key=key, value=value, headers=list(headers or []),
                                    timestamp_ms=timestamp_ms)
                for key, value in map(_key_value, messages)
            ]
            acknowledgements = await asyncio.gather(*pending)
        finally:
            await producer.stop()
    next_offsets: dict[int, int] = {}
    for ack in acknowledgements:
        next_offsets[ack.partition] = max(next_offsets.get(ack.partition, 0), ack.offset + 1)
    return next_offsets


@asynccontextmanager
async def _admin(bootstrap: str) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(REQUEST_TIMEOUT * 1000))
    await asyncio.wait_for(admin.start(), timeout=REQUEST_TIMEOUT)
    try:
        yield admin
    finally:
        await asyncio.wait_for(admin.close(), timeout=REQUEST_TIMEOUT)


async def _read_committed(
    admin: AIOKafkaAdminClient, group_id: str, topic: str, partitions: Iterable[int]
) -> dict[int, int]:
    # Partitions must be named: the local broker drops the connection on OffsetFetch for "all topics".
    tps = [TopicPartition(topic, p) for p in partitions]
    offsets: dict[TopicPartition, Any] = await asyncio.wait_for(
        admin.list_consumer_group_offsets(group_id, partitions=tps), timeout=REQUEST_TIMEOUT
    )
    return {tp.partition: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}


async def committed_offsets(
    bootstrap: str, group_id: str, topic: str, partitions: Iterable[int]
) -> dict[int, int]:
    """The group's committed offset per partition; partitions without a commit are left out."""
    async with _admin(bootstrap) as admin:
        return await _read_committed(admin, group_id, topic, partitions)


async def wait_for_committed(
    bootstrap: str, group_id: str, topic: str, expected: dict[int, int], timeout: float
) -> None:
    """Poll until the group's committed offset reaches ``expected`` on every partition named there."""
    deadline = time.monotonic() + timeout
    current: dict[int, int] = {}
    async with _admin(bootstrap) as admin:
        while True:
            current = await _read_committed(admin, group_id, topic, expected)
            if all(current.get(p, -1) >= offset for p, offset in expected.items()):
                return
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(POLL_INTERVAL)
    raise AssertionError(
        f"group {group_id!r} on {topic!r} did not commit the expected offsets within {timeout:g}s: "
        f"committed {dict(sorted(current.items()))}, expected {dict(sorted(expected.items()))}"
    )


async def consume_all(
    bootstrap: str, topic: str, *, count: int, timeout: float
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read ``topic`` from the beginning, without a consumer group, until ``count`` records arrived.

    Returns every record seen (possibly more than ``count`` if they came in the same fetch); raises
    AssertionError with the number seen if fewer than ``count`` arrive within ``timeout``.
    """
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,  # no group: all partitions at once, no join delay, nothing committed
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        request_timeout_ms=int(REQUEST_TIMEOUT * 1000),
    )
    records: list[ConsumerRecord[bytes, bytes]] = []
    deadline = time.monotonic() + timeout
    await asyncio.wait_for(consumer.start(), timeout=REQUEST_TIMEOUT)
    try:
        while len(records) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"saw {len(records)} of {count} records on {topic!r} within {timeout:g}s"
                )
            poll_ms = int(min(remaining, 1.0) * 1000)
            batches = await asyncio.wait_for(consumer.getmany(timeout_ms=poll_ms), timeout=REQUEST_TIMEOUT)
            for batch in batches.values():
                records.extend(batch)
    finally:
        await asyncio.wait_for(consumer.stop(), timeout=REQUEST_TIMEOUT)
    return records
