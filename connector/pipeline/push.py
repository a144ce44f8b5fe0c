"""The push loop: dossier.events → validate → map → portal, with outcomes recorded and offsets committed
only once every event at or below them is finished (synced, skipped by a named rule, or dead-lettered).

Follow one event: ``PushPipeline.run`` polls a batch → ``_drain_partition`` takes the partition's records in
order → ``EventHandler.handle`` decides its outcome → the watermark finishes it → ``_commit``.

An error that belongs to one record (invalid input, a refusal of that record) dead-letters it. An error
that every record would meet (adapter down, login refused, state store unreachable) does not: the record
stays unfinished, its partition is sought back to it, and the pipeline waits before trying again — the
backlog waits in Kafka instead of draining into the DLQ.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from connector.config import RetrySettings, Settings
from connector.errors import InvalidInput, PermanentError, SyncError
from connector.events import DossierEvent, decode_event
from connector.kafka import ERROR_HEADER_PREFIX, DeadLetterQueue, OffsetWatermark, dead_letter_headers
from connector.mapping import MappedEvent, Mappings, map_event
from connector.observability import Metrics
from connector.pipeline.retry import call_with_retries
from connector.store import StateStore

log = structlog.get_logger(__name__)

OutcomeKind = Literal["synced", "skipped", "dead_lettered"]


@dataclass(frozen=True)
class Outcome:
    kind: OutcomeKind
    reason: str  # synced: created / updated / step; skipped: the rule; dead_lettered: the error reason


class Portal(Protocol):
    """What the push loop needs of the adapter client."""

    async def push_dossiers(self, records: Sequence[Mapping[str, Any]], *, updating: bool) -> bool: ...

    async def push_progress(self, steps: Sequence[Mapping[str, Any]]) -> None: ...


class ConsumedRecord(Protocol):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]


def record_hash(record: Mapping[str, Any]) -> str:
    canonical = json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


_INDEX = re.compile(r"\[\d+\]")


class EventHandler:
    """One Kafka record in, one outcome out. All the decisions; none of the offset bookkeeping."""

    def __init__(
        self,
        *,
        settings: Settings,
        mappings: Mappings,
        store: StateStore,
        portal: Portal,
        dead_letters: DeadLetterQueue,
        metrics: Metrics,
    ) -> None:
        self._settings = settings
        self._mappings = mappings
        self._store = store
        self._portal = portal
        self._dlq = dead_letters
        self._metrics = metrics

    async def handle(self, record: ConsumedRecord) -> Outcome:
        """The record's outcome. Raises a SyncError only when it affects every record (the caller waits)."""
        started = time.monotonic()
        try:
            outcome = await self._sync(record)
        except SyncError as error:
            if error.affects_every_record:
                raise
            await self._dead_letter(record, error)
            outcome = Outcome("dead_lettered", error.reason)
        else:
            if outcome.kind == "synced":
                self._metrics.push_latency.observe(time.monotonic() - started)
        self._metrics.event_outcomes.labels(outcome.kind, outcome.reason).inc()
        return outcome

    def _read(self, record: ConsumedRecord) -> DossierEvent:
        try:
            return decode_event(record.key, record.value, max_bytes=self._settings.kafka.max_event_bytes)
        except SyncError:
            raise
        except Exception as exc:  # a bug in pure code must not stall a partition for ever
            raise InvalidInput(f"unexpected {type(exc).__name__} while reading the event",
                               reason="unexpected_error") from exc

    def _map(self, event: DossierEvent) -> MappedEvent:
        try:
            return map_event(event, self._mappings)
        except SyncError:
            raise
        except Exception as exc:  # same: dead-letter it, named, rather than crash-loop
            raise InvalidInput(f"unexpected {type(exc).__name__} while mapping the event",
                               reason="unexpected_error") from exc

    async def _sync(self, record: ConsumedRecord) -> Outcome:
        event = self._read(record)
        dossier = event.dossier
        if dossier.origin == "portal":
            # Kept for replay rather than skipped: nothing an operator may need later is thrown away.
            raise PermanentError(
                "dossiers that started on the national portal get their status back through "
                "DongBoTrangThaiHoSo, which this version does not send yet",
                reason="origin_portal_unsupported",
                field="dossier.origin",
            )
        entry = await self._store.get(dossier.no)
        if entry is not None and dossier.version <= entry.last_version:
            rule = "duplicate" if dossier.version == entry.last_version else "stale_version"
            log.debug("event skipped", rule=rule, dossier=dossier.no, version=dossier.version,
                      portal_version=entry.last_version)
            return Outcome("skipped", rule)

        mapped = self._map(event)
        for cut in mapped.truncated:
            self._metrics.truncated_fields.labels(_INDEX.sub("[]", cut)).inc()
        digest = record_hash(mapped.record)
        exists = entry is not None and entry.exists_on_portal
        reason = "step"
        # A step event whose dossier record is unchanged since the last push needs only the step.
        if mapped.step is None or entry is None or entry.record_hash != digest:
            was_update = await self._retrying(
                "DongBoHoSoMC", lambda: self._portal.push_dossiers([mapped.record], updating=exists)
            )
            reason = "updated" if was_update else "created"
        if mapped.step is not None:
            step = mapped.step
            await self._retrying("CapNhatTienDoHoSoMC", lambda: self._portal.push_progress([step]))
        await self._store.record_synced(dossier.no, dossier.version, digest, event.event_id)
        log.debug("event synced", dossier=dossier.no, version=dossier.version, how=reason)
        return Outcome("synced", reason)

    async def _retrying(self, service: str, call: Any) -> Any:
        return await call_with_retries(
            call,
            service=service,
            policy=self._settings.portal.retry,
            on_retry=lambda svc, reason: self._metrics.retries.labels(svc, reason).inc(),
        )

    async def _dead_letter(self, record: ConsumedRecord, error: SyncError) -> None:
        headers = dead_letter_headers(
            record.headers, topic=record.topic, partition=record.partition, offset=record.offset,
            error=error, attempts=error.attempts,
        )
        value = record.value
        if error.reason == "too_large":
            # It may not fit in a produce request; the headers say where the original lies.
            headers.append((ERROR_HEADER_PREFIX + "original.size", str(len(value or b"")).encode()))
            value = None
        await self._dlq.send(record.key, value, headers)
        log.warning(
            "event dead-lettered",
            topic=record.topic, partition=record.partition, offset=record.offset,
            kind=error.kind, reason=error.reason, field=error.field,
            # The far side's own text may quote a citizen's data: it goes to the DLQ headers only.
            error=None if error.quotes_remote_text else error.message,
            error_code=getattr(error, "error_code", None),
            attempts=error.attempts, dlq=self._dlq.topic,
        )


class _CommitOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, pipeline: PushPipeline) -> None:
        self._pipeline = pipeline

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        await self._pipeline.partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        if assigned:
            log.info("partitions assigned", partitions=sorted(tp.partition for tp in assigned))


class PushPipeline:
    """Polls dossier.events; partitions run in parallel, records of one partition strictly in order."""

    def __init__(
        self,
        *,
        consumer: AIOKafkaConsumer,
        handler: EventHandler,
        metrics: Metrics,
        topic: str,
        retry: RetrySettings,
        batch_budget_seconds: float,
        shutdown_grace_seconds: float = 30.0,
    ) -> None:
        self._consumer = consumer
        self._handler = handler
        self._metrics = metrics
        self._topic = topic
        self._retry = retry
        self._batch_budget = batch_budget_seconds
        self._grace = shutdown_grace_seconds
        self._watermarks: dict[TopicPartition, OffsetWatermark] = {}
        self._committed: dict[TopicPartition, int] = {}
        # Held while a batch is being worked on: a revocation waits for it, then commits.
        self._busy = asyncio.Lock()
        self._lag_reported: set[TopicPartition] = set()
        self._consecutive_waits = 0

    async def run(self, stop: asyncio.Event) -> None:
        self._consumer.subscribe([self._topic], listener=_CommitOnRevoke(self))
        stopping = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                batches = await self._consumer.getmany(timeout_ms=500)
                blocked = await self._work_on(batches, stopping) if batches else None
                await self._commit()
                self._update_lag()
                if blocked is not None:
                    await self._wait_out(blocked, stop)
                elif batches:
                    self._consecutive_waits = 0
        finally:
            stopping.cancel()
            await self._commit()

    async def _work_on(
        self, batches: Mapping[TopicPartition, Sequence[Any]], stopping: asyncio.Task[Any]
    ) -> SyncError | None:
        """Work through one poll's records; return the service-wide error that stopped a partition, if any."""
        deadline = asyncio.get_running_loop().time() + self._batch_budget
        async with self._busy:
            work = asyncio.create_task(self._drain_all(batches, stopping, deadline))
            done, _ = await asyncio.wait({work, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if work not in done:
                # Asked to stop: in-flight records get a grace period; what does not finish is not
                # committed and will be delivered again.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(work), timeout=self._grace)
                if not work.done():
                    log.warning("shutdown grace period over; unfinished events will be re-delivered",
                                grace_seconds=self._grace)
                    work.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await work
                    return None
            return work.result()  # re-raises what broke a partition (e.g. the DLQ unreachable)

    async def _drain_all(
        self, batches: Mapping[TopicPartition, Sequence[Any]], stopping: asyncio.Task[Any], deadline: float
    ) -> SyncError | None:
        # A TaskGroup, not gather: if one partition fails outright, the others are cancelled with it.
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(self._drain_partition(tp, records, stopping, deadline))
                     for tp, records in batches.items()]
        return next((error for task in tasks if (error := task.result()) is not None), None)

    async def _drain_partition(
        self, tp: TopicPartition, records: Sequence[Any], stopping: asyncio.Task[Any], deadline: float
    ) -> SyncError | None:
        watermark = self._watermarks.setdefault(tp, OffsetWatermark())
        self._metrics.events_consumed.labels(tp.topic).inc(len(records))
        loop = asyncio.get_running_loop()
        for record in records:
            if stopping.done():
                return None  # not finished, not committed: re-delivered after restart
            if loop.time() > deadline:
                # Poll again before the group thinks we hung; the rest of the batch is fetched anew.
                self._consumer.seek(tp, record.offset)
                return None
            watermark.track(record.offset)
            try:
                await self._handler.handle(record)
            except SyncError as error:  # only errors that every record would meet come out of handle
                self._consumer.seek(tp, record.offset)
                return error
            watermark.finish(record.offset)
        return None

    async def _wait_out(self, error: SyncError, stop: asyncio.Event) -> None:
        """Back off after a service-wide error: exponential with full jitter up to the retry cap, or the
        whole Retry-After the server asked for (within the batch budget, so the consumer, which polls
        again right after, stays in its group)."""
        self._consecutive_waits += 1
        asked = getattr(error, "retry_after", None)
        exponential = min(self._retry.max_backoff_seconds,
                          self._retry.initial_backoff_seconds * 2 ** self._consecutive_waits)
        delay = min(asked, self._batch_budget) if asked is not None else random.uniform(0, exponential)  # noqa: S311
        self._metrics.service_waits.labels(error.reason).inc()
        log.error("cannot sync: the cause affects every event; events wait in Kafka",
                  reason=error.reason, kind=error.kind, error=None if error.quotes_remote_text else error.message,
                  attempts=error.attempts, retry_in_seconds=round(delay, 3), consecutive=self._consecutive_waits)
        self._metrics.waiting.set(1)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
        finally:
            self._metrics.waiting.set(0)

    async def _commit(self, only: Sequence[TopicPartition] | None = None) -> None:
        offsets = {
            tp: point
            for tp, wm in self._watermarks.items()
            if (only is None or tp in only)
            and (point := wm.commit_point) is not None
            and point > self._committed.get(tp, -1)
        }
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # The group rebalanced under us; the new owner resumes from the last good commit. Duplicates
            # that follow are harmless (full state, version check).
            log.warning("offset commit refused; the group is rebalancing", error=type(exc).__name__)
            return
        except KafkaError as exc:
            log.warning("offset commit failed; will try again", error=type(exc).__name__)
            return
        # A revocation may have dropped a partition while the commit was on the wire: remember only
        # what is still ours, or a partition that comes back would have its commits suppressed.
        self._committed.update({tp: o for tp, o in offsets.items() if tp in self._watermarks})
        log.debug("offsets committed", offsets={f"{tp.topic}[{tp.partition}]": o for tp, o in offsets.items()})

    async def partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        async with self._busy:
            await self._commit(only=revoked)
            for tp in revoked:
                self._watermarks.pop(tp, None)
                self._committed.pop(tp, None)
                if tp in self._lag_reported:
                    self._metrics.consumer_lag.remove(tp.topic, str(tp.partition))
                    self._lag_reported.discard(tp)
        if revoked:
            log.info("partitions revoked", partitions=sorted(tp.partition for tp in revoked))

    def _update_lag(self) -> None:
        for tp in self._consumer.assignment():
            highwater = self._consumer.highwater(tp)
            point = self._watermarks[tp].commit_point if tp in self._watermarks else None
            if highwater is not None and point is not None:
                self._metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(highwater - point, 0))
                self._lag_reported.add(tp)
