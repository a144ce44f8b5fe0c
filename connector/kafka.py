"""Kafka at the edge: consumer and producer construction, the per-partition commit watermark, the DLQ.

The watermark and the DLQ headers are pure; the rest wraps aiokafka.
"""

from __future__ import annotations

import asyncio
import heapq
import ssl
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from connector.config import KafkaSettings
from connector.errors import SyncError

log = structlog.get_logger(__name__)

Header = tuple[str, bytes | None]  # Kafka allows a header without a value

# Kafka Connect's names, so existing DLQ tooling reads our records too.
ERROR_HEADER_PREFIX = "__connect.errors."
DLQ_HEADROOM_BYTES = 256 * 1024


class OffsetWatermark:
    """Per-partition commit point: the offset after the highest one below which every record is finished.

    Records may finish out of order (different dossiers in parallel); the commit point only moves past a
    record once it and everything before it are finished, so a crash re-delivers unfinished work.
    """

    def __init__(self) -> None:
        self._unfinished: list[int] = []  # min-heap of tracked offsets; finished ones are removed lazily
        self._pending: set[int] = set()
        self._finished: set[int] = set()
        self._highest: int | None = None

    def track(self, offset: int) -> None:
        """Note a record as started. Tracking it again (re-fetched after a seek back) changes nothing."""
        if offset in self._pending:
            return
        self._pending.add(offset)
        heapq.heappush(self._unfinished, offset)
        self._highest = offset if self._highest is None else max(self._highest, offset)

    def finish(self, offset: int) -> None:
        self._pending.discard(offset)
        self._finished.add(offset)
        while self._unfinished and self._unfinished[0] in self._finished:
            self._finished.discard(heapq.heappop(self._unfinished))

    @property
    def commit_point(self) -> int | None:
        """The offset to commit (Kafka's convention: the next one to read), or None if nothing was tracked."""
        if self._highest is None:
            return None
        return self._unfinished[0] if self._unfinished else self._highest + 1

    @property
    def in_flight(self) -> int:
        return len(self._pending)


def dead_letter_headers(
    original: Sequence[Header], *, topic: str, partition: int, offset: int, error: SyncError, attempts: int
) -> list[Header]:
    """The original headers plus ones naming where the record came from and why it failed."""
    ours = {
        "topic": topic,
        "partition": str(partition),
        "offset": str(offset),
        "exception.class.name": error.error_class,
        "exception.message": str(error),
        "kind": error.kind,
        "reason": error.reason,
        "field": error.field or "",
        "attempts": str(attempts),
    }
    kept = [(k, v) for k, v in original if not k.startswith(ERROR_HEADER_PREFIX)]
    # "backslashreplace": a header is bytes whatever our text holds; encoding must never raise here.
    return kept + [(ERROR_HEADER_PREFIX + k, v.encode("utf-8", errors="backslashreplace")) for k, v in ours.items()]


def _client_options(settings: KafkaSettings) -> dict[str, Any]:
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "client_id": settings.client_id,
        "security_protocol": settings.security_protocol,
        "request_timeout_ms": settings.request_timeout_ms,
    }
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = ssl.create_default_context()
    if settings.sasl_mechanism is not None:
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username
        options["sasl_plain_password"] = (
            settings.sasl_password.get_secret_value() if settings.sasl_password else None
        )
    return options


def build_consumer(settings: KafkaSettings) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        **_client_options(settings),
        group_id=settings.group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=settings.max_poll_records,
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=settings.heartbeat_interval_ms,
        max_poll_interval_ms=settings.max_poll_interval_ms,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        # Values are bounded by max_event_bytes in decoding; the fetch limit keeps one poll bounded too.
        max_partition_fetch_bytes=max(settings.max_event_bytes, 1_048_576),
    )


async def commit_offsets(consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int], *, topic: str) -> bool:
    """Commit ``offsets``; False when the broker refused (the group rebalancing: the new owner resumes from the
    last good commit, and what it reads again is harmless to handle twice) or the commit failed (tried again
    with the next one). Either way the daemon goes on."""
    if not offsets:
        return False
    try:
        await consumer.commit(offsets)
    except (CommitFailedError, IllegalStateError) as exc:
        log.warning("offset commit refused; the group is rebalancing", topic=topic, error=type(exc).__name__)
        return False
    except KafkaError as exc:
        log.warning("offset commit failed; will try again", topic=topic, error=type(exc).__name__)
        return False
    log.debug("offsets committed", offsets={f"{tp.topic}[{tp.partition}]": o for tp, o in offsets.items()})
    return True


def build_producer(settings: KafkaSettings) -> AIOKafkaProducer:
    # acks=all: a dead-lettered record must be durable before its offset is committed. The request size
    # leaves room for the largest event we accept plus its key and error headers.
    return AIOKafkaProducer(
        **_client_options(settings), acks="all", linger_ms=5,
        max_request_size=settings.max_event_bytes + DLQ_HEADROOM_BYTES,
    )


class DeadLetterQueue:
    """Writes failed records to the DLQ topic: byte-identical key and value, error headers added."""

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self._producer = producer
        self.topic = topic

    async def send(self, key: bytes | None, value: bytes | None, headers: Iterable[Header]) -> None:
        # send_and_wait returns only after the broker acknowledged: the caller may then commit.
        await self._producer.send_and_wait(self.topic, key=key, value=value, headers=list(headers))


async def read_topic(settings: KafkaSettings, topic: str, *, since_ms: int | None = None, seek_to_time: bool = False,
                     wait_seconds: float = 30.0) -> AsyncIterator[list[ConsumerRecord[bytes, bytes]]]:
    """Every record of ``topic`` there now (written at or after ``since_ms``, when given), a batch at a
    time, read outside any consumer group (nothing is committed). Records the broker keeps from before
    ``since_ms`` are read and passed over: a DLQ is small enough, and that needs nothing of the broker but
    plain fetches. With ``seek_to_time`` (a large topic) each partition starts at the offset the broker gives
    for ``since_ms`` (``offsets_for_times``), from the beginning where it gives none. ``wait_seconds`` bounds
    every wait on the broker, and a read that stops getting anywhere."""
    consumer = AIOKafkaConsumer(
        **_client_options(settings), group_id=None, enable_auto_commit=False, auto_offset_reset="earliest",
        max_partition_fetch_bytes=max(settings.max_event_bytes + DLQ_HEADROOM_BYTES, 1_048_576))
    try:
        await asyncio.wait_for(consumer.start(), wait_seconds)
        await asyncio.wait_for(consumer.topics(), wait_seconds)  # metadata, so the topic's partitions are known
        partitions = sorted(consumer.partitions_for_topic(topic) or ())
        if not partitions:
            return
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        await asyncio.wait_for(consumer.seek_to_beginning(*tps), wait_seconds)
        if seek_to_time and since_ms is not None:
            found = await asyncio.wait_for(consumer.offsets_for_times({tp: since_ms for tp in tps}), wait_seconds)
            for tp, at in found.items():
                if at is not None:
                    consumer.seek(tp, at.offset)
        ends: dict[TopicPartition, int] = await asyncio.wait_for(consumer.end_offsets(tps), wait_seconds)
        remaining = set(tps)
        loop = asyncio.get_running_loop()
        progress_by = loop.time() + wait_seconds
        while remaining:
            batches = await asyncio.wait_for(consumer.getmany(*remaining, timeout_ms=500), wait_seconds)
            for records in batches.values():
                wanted = [r for r in records if since_ms is None or r.timestamp >= since_ms]
                if wanted:
                    yield wanted
            if batches:
                progress_by = loop.time() + wait_seconds
            elif loop.time() > progress_by:
                raise TimeoutError(f"reading {topic}: no record for {wait_seconds:g} s before its end offsets")
            for tp in list(remaining):
                # The end: the larger of the listed end offset and the fetches' high watermark (some
                # brokers list a batch's end wrongly; a fetch's high watermark is always right). A partition
                # is judged only once a fetch has answered for it.
                highwater = consumer.highwater(tp)
                if highwater is not None and await asyncio.wait_for(consumer.position(tp), wait_seconds) >= max(
                        highwater, ends[tp]):
                    remaining.discard(tp)
    finally:
        await consumer.stop()


__all__ = [
    "DeadLetterQueue",
    "OffsetWatermark",
    "build_consumer",
    "build_producer",
    "dead_letter_headers",
    "read_topic",
]
