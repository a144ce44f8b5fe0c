"""The outbox relay: publishes what the way back owes Kafka, each message once.

A decision (a new submission revision, a payment's outcome) is written to the state store together with its
message (``InboundStore``); the relay sends owed messages in the order they were decided, waits for the
broker's acknowledgement, and marks them published. The one gap is a crash after the broker took a message
and before the mark: at start, ``recover`` looks for the owed messages' ids on their topics (the
``message-id`` header) and marks the ones it finds, so they are not sent twice.

Only one instance publishes at a time (a lease in the store): two relays reading the same owed messages
would each send them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer

from connector.config import KafkaSettings
from connector.kafka import read_topic
from connector.observability import Metrics
from connector.retry import exponential_backoff, wait_any
from connector.store.way_back import InboundStore, OutboxMessage, Published

log = structlog.get_logger(__name__)

MESSAGE_ID_HEADER = "message-id"
EVENT_TYPE_HEADER = "event-type"
BATCH = 100
# How far before the oldest owed message the recovery scan starts: a record's timestamp is set by the
# producer after the message was written, and clocks of the store's and the broker's hosts may differ.
RECOVERY_MARGIN = timedelta(minutes=10)
SEND_TIMEOUT_SECONDS = 60.0
PUBLISH_RETRY_MAX_SECONDS = 30.0  # the longest wait between publish attempts while the broker or the store is away


def outbox_message(message_id: str, topic: str, key: str, value: bytes | dict[str, Any], *, event_type: str,
                   now: datetime) -> OutboxMessage:
    """A message owed to ``topic``; a dict value is sent as compact UTF-8 JSON."""
    body = value if isinstance(value, bytes) else json.dumps(value, ensure_ascii=False,
                                                             separators=(",", ":")).encode("utf-8")
    headers = ((MESSAGE_ID_HEADER, message_id.encode("utf-8")), (EVENT_TYPE_HEADER, event_type.encode("utf-8")))
    return OutboxMessage(message_id, topic, key.encode("utf-8"), body, headers, hashlib.sha256(body).hexdigest(),
                         now)


class OutboxRelay:
    def __init__(self, inbound: InboundStore, producer: AIOKafkaProducer, kafka: KafkaSettings, metrics: Metrics,
                 *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._inbound = inbound
        self._producer = producer
        self._kafka = kafka
        self._metrics = metrics
        self._clock = clock
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._recovered = False

    def wake(self) -> None:
        """Something was written to the outbox: publish soon."""
        self._wake.set()

    async def recover(self, *, wait_seconds: float = 30.0) -> int:
        """Mark owed messages the broker already holds (sent before a crash, never marked); return how many."""
        async with self._lock:
            found = 0
            owed = await self._inbound.unpublished(limit=100_000)
            by_topic: dict[str, dict[str, OutboxMessage]] = {}
            for message in owed:
                by_topic.setdefault(message.topic, {})[message.message_id] = message
            for topic, messages in by_topic.items():
                since = min(m.created_at for m in messages.values()) - RECOVERY_MARGIN
                seen: list[Published] = []
                async for batch in read_topic(self._kafka, topic, since_ms=int(since.timestamp() * 1000),
                                              wait_seconds=wait_seconds):
                    for record in batch:
                        message_id = _header(record.headers, MESSAGE_ID_HEADER)
                        if message_id in messages:
                            seen.append(Published(message_id, record.partition, record.offset))
                            del messages[message_id]
                await self._inbound.mark_published(seen, self._clock())
                found += len(seen)
            self._recovered = True
            if found:
                log.info("outbox.recovered", found_on_topic=found, owed=len(owed))
            return found

    async def publish_owed(self) -> int:
        """Send every owed message, oldest first, and mark each published once the broker holds it; return
        how many. When this returns, everything written to the outbox before the call is on its topic, but a
        message withheld while its submission revision is in conflict."""
        if not self._recovered:
            await self.recover()
        total = 0
        async with self._lock:
            while True:
                # Claimed before sending: a conflict can withhold a message only until the relay takes it.
                owed = await self._inbound.claim_owed(limit=BATCH, now=self._clock())
                if not owed:
                    return total
                # Queued in order; the producer keeps the order within a partition (one dossier's revisions).
                try:
                    sending = [await self._producer.send(m.topic, value=m.value, key=m.key,
                                                         headers=list(m.headers)) for m in owed]
                    results = await asyncio.wait_for(asyncio.gather(*sending, return_exceptions=True),
                                                     SEND_TIMEOUT_SECONDS)
                    # The ones the broker took are marked even when others failed: sent again, they would be
                    # twice.
                    taken = [(m, r) for m, r in zip(owed, results, strict=True) if not isinstance(r, BaseException)]
                    await self._inbound.mark_published(
                        [Published(m.message_id, r.partition, r.offset) for m, r in taken], self._clock())
                except BaseException:
                    # Some may be on the topic unmarked (a timeout, the store away): look there before sending
                    # anything again.
                    self._recovered = False
                    raise
                for m, _ in taken:
                    self._metrics.outbox_published.labels(m.topic).inc()
                total += len(taken)
                failed = next((r for r in results if isinstance(r, BaseException)), None)
                if failed is not None:
                    raise failed

    async def run(self, stop: asyncio.Event, *, interval: float = 1.0) -> None:
        """Publish what is owed until ``stop``; errors are waited out (the messages stay owed)."""
        failures = 0
        while not stop.is_set():
            self._wake.clear()
            wait = interval
            try:
                await self.publish_owed()
                failures = 0
            except Exception as error:  # noqa: BLE001 - the broker or the store is away: owed messages wait
                failures += 1
                wait = exponential_backoff(failures, initial=interval, cap=PUBLISH_RETRY_MAX_SECONDS)
                log.warning("outbox.publish_failed", error=type(error).__name__, retry_in=round(wait, 1))
            await wait_any(stop, self._wake, seconds=wait)


def _header(headers: Any, name: str) -> str | None:
    for key, value in headers or ():
        if key == name and value is not None:
            try:
                return bytes(value).decode("utf-8")
            except UnicodeDecodeError:
                return None
    return None


__all__ = ["EVENT_TYPE_HEADER", "MESSAGE_ID_HEADER", "OutboxRelay", "outbox_message"]
