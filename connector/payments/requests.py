"""``payment.requests`` → pending payments: the consumer group of its own, each request registered with the
tracker (``PaymentTracker.register``) or recorded as a failure, offsets committed once their records are.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from connector.config import Settings
from connector.errors import InvalidInput, RetryableError, SyncError
from connector.failures import ConsumedRecord, FailureRecorder
from connector.kafka import build_consumer, commit_offsets
from connector.observability import Metrics
from connector.payments.tracker import PaymentTracker
from connector.retry import exponential_backoff, wait_any

log = structlog.get_logger(__name__)

REQUEST_RETRY_MAX_SECONDS = 30.0

def payment_request_group(settings: Settings) -> str:
    """The consumer group reading ``payment.requests``: apart from the dossier events' group."""
    return f"{settings.kafka.group_id}.payments"


def build_request_consumer(settings: Settings) -> AIOKafkaConsumer:
    """A consumer (not started) for ``payment.requests`` in its own group."""
    return build_consumer(settings.kafka.model_copy(update={"group_id": payment_request_group(settings)}))


class PaymentRequestConsumer:
    """Reads ``payment.requests`` (its own group; see ``build_request_consumer``), registers each request
    with the tracker, records an invalid one as a failure (failure table and DLQ), and commits a partition's
    offset only up to what was registered or recorded. ``consumer`` is started and stopped by the caller;
    ``failures`` is this consumer's own (started and closed by ``run``)."""

    def __init__(self, settings: Settings, tracker: PaymentTracker, consumer: AIOKafkaConsumer,
                 failures: FailureRecorder, metrics: Metrics) -> None:
        self._settings = settings
        self._tracker = tracker
        self._consumer = consumer
        self._failures = failures
        self._metrics = metrics
        self._topic = settings.kafka.topics.payment_requests
        self._retry = settings.portal.retry

    async def run(self, stop: asyncio.Event) -> None:
        self._consumer.subscribe([self._topic])
        self._failures.start()
        try:
            while not stop.is_set():
                batches = await self._consumer.getmany(timeout_ms=200,
                                                       max_records=self._settings.kafka.max_poll_records)
                if not batches:
                    continue
                finished = await asyncio.gather(*(self._partition(records, stop) for records in batches.values()))
                offsets = {tp: offset for tp, offset in zip(batches, finished, strict=True) if offset is not None}
                # Requests read again after a refused commit are harmless: registering is idempotent.
                await commit_offsets(self._consumer, offsets, topic=self._topic)
        finally:
            await self._failures.close()

    async def _partition(self, records: Sequence[Any], stop: asyncio.Event) -> int | None:
        """Handle one partition's records in order; the offset to commit after the last one finished."""
        finished: int | None = None
        for record in records:
            self._metrics.events_consumed.labels(record.topic).inc()
            if not await self._handle(record, stop):
                break
            finished = record.offset + 1
        return finished

    async def _handle(self, record: ConsumedRecord, stop: asyncio.Event) -> bool:
        """Register or record one request; a service-wide error (the store or the DLQ away) is waited out.
        False when ``stop`` came first (the record is not finished, and is read again after a restart)."""
        attempt = 0
        while True:
            try:
                try:
                    result = await self._tracker.register(record)
                    self._metrics.payment_requests.labels(result).inc()
                except InvalidInput as error:
                    await self._failures.record(record, error)
                    self._metrics.payment_requests.labels(error.reason).inc()
                return True
            except (RetryableError, KafkaError, OSError, TimeoutError) as error:
                # The store or the DLQ away: every record would meet it. Anything else is a fault: it stops.
                attempt += 1
                wait = exponential_backoff(attempt, initial=self._retry.initial_backoff_seconds,
                                           cap=REQUEST_RETRY_MAX_SECONDS)
                log.warning("payment.request_waiting", error=type(error).__name__,
                            reason=error.reason if isinstance(error, SyncError) else None,
                            retryable=isinstance(error, RetryableError), retry_in=round(wait, 2),
                            partition=record.partition, offset=record.offset)
                await wait_any(stop, seconds=wait)
                if stop.is_set():
                    return False


__all__ = ["PaymentRequestConsumer", "build_request_consumer", "payment_request_group"]
