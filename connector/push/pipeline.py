"""The push side: dossier.events → validate → map → portal, fast, in order per dossier, nothing lost.

Follow one event:
1. ``PushPipeline._admit`` reads it as it is polled: decode, validate, map (pure). A record-level
   failure is dead-lettered there. A good event joins its dossier's **lane**.
2. A lane runs one **unit** at a time: everything waiting for that dossier (``DossierSync.run_unit``).
   Full-state events make coalescing safe: the unit pushes only the newest record, then every step in
   order. Different dossiers' units run concurrently.
3. Units submit their record, steps and ledger write to **micro-batchers**, so many dossiers share one
   ``DongBoHoSoMC`` / ``CapNhatTienDoHoSoMC`` call and one ledger transaction. Every adapter call goes
   through the ``PortalGateway``: rate limit, concurrency limit, circuit breaker, and the wait-out of
   service-wide errors (which never dead-letter an event). A batch the adapter refuses is split until
   the refused records are found; only they are dead-lettered. A dossier that started on the national
   portal has its state sent back instead with ``DongBoTrangThaiHoSo``, one dossier per call (its data is
   one object), through the same gateway; its steps go with everyone else's.
4. When a unit ends, each of its events is finished in its partition's **watermark**; offsets are
   committed up to the first unfinished event. Consumption pauses while too much is in flight or the
   adapter is unavailable, so memory stays bounded and the backlog waits in Kafka.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from connector.config import PushSettings
from connector.failures import ConsumedRecord, FailureRecorder
from connector.kafka import OffsetWatermark, commit_offsets
from connector.observability import Metrics
from connector.portal.gateway import PortalGateway
from connector.push.sync import (
    DossierSync,
    EventReader,
    PendingEvent,
    Rejected,
    message_size,
)

log = structlog.get_logger(__name__)
T = TypeVar("T")
X = TypeVar("X")
R = TypeVar("R")



# ---------------------------------------------------------------------------------------------------------
# Kafka side: admission, lanes, watermarks, commits, back-pressure, rebalances


@dataclass
class _Lane:
    tp: TopicPartition
    partition: _PartitionState  # the assignment its events were read under
    waiting: list[PendingEvent] = field(default_factory=list)
    task: asyncio.Task[None] | None = None


@dataclass
class _PartitionState:
    watermark: OffsetWatermark = field(default_factory=OffsetWatermark)
    events: int = 0  # read but not finished
    bytes: int = 0
    committed: int = -1


class _CommitOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, pipeline: PushPipeline) -> None:
        self._pipeline = pipeline

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        await self._pipeline.partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        if assigned:
            log.info("partitions assigned", partitions=sorted(tp.partition for tp in assigned))


class PushPipeline:
    def __init__(
        self,
        *,
        consumer: AIOKafkaConsumer,
        reader: EventReader,
        sync: DossierSync,
        gateway: PortalGateway,
        failures: FailureRecorder,
        metrics: Metrics,
        topic: str,
        push: PushSettings,
    ) -> None:
        self._consumer = consumer
        self._reader = reader
        self._sync = sync
        self._gateway = gateway
        self._failures = failures
        self._metrics = metrics
        self._topic = topic
        self._push = push
        self._partitions: dict[TopicPartition, _PartitionState] = {}
        self._lanes: dict[str, _Lane] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._paused = False
        self._paused_by_adapter = False
        self._fatal: BaseException | None = None

    # -- the loop ---------------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        self._consumer.subscribe([self._topic], listener=_CommitOnRevoke(self))
        self._sync.start()
        loop = asyncio.get_running_loop()
        next_commit = loop.time() + self._push.commit_interval_ms / 1000
        try:
            while not stop.is_set() and self._fatal is None:
                room = self._apply_backpressure()
                # Never read more than the in-flight bound leaves room for, whatever the backlog.
                batches = await self._consumer.getmany(timeout_ms=100, max_records=max(room, 1))
                for tp, records in batches.items():
                    self._metrics.events_consumed.labels(tp.topic).inc(len(records))
                    for record in records:
                        self._admit(tp, record)
                if loop.time() >= next_commit:
                    await self._commit()
                    self._update_lag()
                    next_commit = loop.time() + self._push.commit_interval_ms / 1000
            await self._finish_in_flight()
        finally:
            await self._sync.close()
            await self._commit()
        if self._fatal is not None:
            raise self._fatal

    def _apply_backpressure(self) -> int:
        """Pause or resume consumption; return how many more events may be read now."""
        events = sum(p.events for p in self._partitions.values())
        size = sum(p.bytes for p in self._partitions.values())
        full = events >= self._push.max_in_flight_events or size >= self._push.max_in_flight_bytes
        should_pause = full or self._gateway.unavailable
        assigned = self._consumer.assignment()
        if should_pause:
            # Also pauses partitions assigned since the last pause.
            self._consumer.pause(*assigned)
            if not self._paused:
                # A full in-flight bound comes and goes many times a second while a backlog drains: worth a
                # debug line. The adapter being unavailable is news.
                (log.info if self._gateway.unavailable else log.debug)(
                    "consumption paused", in_flight_events=events, in_flight_bytes=size,
                    adapter_unavailable=self._gateway.unavailable)
                self._paused_by_adapter = self._gateway.unavailable
            self._paused = True
        elif self._paused:
            self._consumer.resume(*assigned)
            self._paused = False
            (log.info if self._paused_by_adapter else log.debug)("consumption resumed", in_flight_events=events)
        return self._push.max_in_flight_events - events

    def _admit(self, tp: TopicPartition, record: ConsumedRecord) -> None:
        state = self._partitions.setdefault(tp, _PartitionState())
        state.watermark.track(record.offset)
        state.events += 1
        state.bytes += message_size(record)
        admitted = self._reader.read(tp, record)
        if isinstance(admitted, Rejected):
            self._spawn(self._record_failure_and_finish(admitted, state))
            return
        no = admitted.no
        lane = self._lanes.get(no)
        if lane is None:
            lane = self._lanes[no] = _Lane(tp, state)
        lane.waiting.append(admitted)
        if lane.task is None:
            self._start_unit(no, lane)

    def _start_unit(self, no: str, lane: _Lane) -> None:
        items, lane.waiting = lane.waiting, []
        lane.task = self._spawn(self._run_unit(no, lane, items))

    async def _run_unit(self, no: str, lane: _Lane, items: list[PendingEvent]) -> None:
        outcomes = await self._sync.run_unit(items)
        now = time.monotonic()
        for item, outcome in zip(items, outcomes, strict=True):
            self._metrics.event_outcomes.labels(outcome.kind, outcome.reason).inc()
            if outcome.kind == "synced":
                self._metrics.push_latency.observe(now - item.admitted_at)
            self._finish(lane.tp, lane.partition, item.record)
        lane.task = None
        if lane.waiting and self._lanes.get(no) is lane:
            self._start_unit(no, lane)
        elif self._lanes.get(no) is lane:
            del self._lanes[no]

    async def _record_failure_and_finish(self, rejected: Rejected, partition: _PartitionState) -> None:
        event = rejected.event
        await self._failures.record(rejected.record, rejected.error,
                                    dossier_no=event.dossier.no if event else None,
                                    event_id=event.event_id if event else None,
                                    event_version=event.dossier.version if event else None)
        self._metrics.event_outcomes.labels("failed", rejected.error.reason).inc()
        self._finish(rejected.tp, partition, rejected.record)

    def _finish(self, tp: TopicPartition, state: _PartitionState, record: ConsumedRecord) -> None:
        if self._partitions.get(tp) is not state:
            # Revoked meanwhile (and perhaps assigned again, with the record read anew): the current
            # owner finishes it in its own count; the ledger and the failure table make a redo harmless.
            return
        state.watermark.finish(record.offset)
        state.events -= 1
        state.bytes -= message_size(record)

    def _spawn(self, work: Awaitable[None]) -> asyncio.Task[None]:
        async def guarded() -> None:
            try:
                await work
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - e.g. the DLQ unreachable: stop, commit what is done
                if self._fatal is None:
                    self._fatal = error
                    log.error("stopping: an event could not be finished", error=type(error).__name__)

        task = asyncio.create_task(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _finish_in_flight(self) -> None:
        """On stop: in-flight units (and the ones they start for events already read) get a grace period;
        what does not finish is not committed and is delivered again."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._push.shutdown_grace_seconds
        while self._tasks and loop.time() < deadline:
            await asyncio.wait(set(self._tasks), timeout=deadline - loop.time())
        if self._tasks:
            log.warning("shutdown grace period over; unfinished events will be re-delivered",
                        unfinished_units=len(self._tasks), grace_seconds=self._push.shutdown_grace_seconds)
            pending = set(self._tasks)
            for task in pending:
                task.cancel()
            await asyncio.wait(pending)

    # -- offsets ----------------------------------------------------------------------------------------

    async def _commit(self, only: Sequence[TopicPartition] | None = None) -> None:
        offsets = {
            tp: point
            for tp, state in self._partitions.items()
            if (only is None or tp in only)
            and (point := state.watermark.commit_point) is not None
            and point > state.committed
        }
        # Events read again after a refused commit are harmless: full state, version check.
        if not await commit_offsets(self._consumer, offsets, topic=self._topic):
            return
        for tp, offset in offsets.items():
            if tp in self._partitions:  # a revocation may have dropped it while the commit was on the wire
                self._partitions[tp].committed = offset

    async def partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        gone = set(revoked)
        lanes = [(no, lane) for no, lane in self._lanes.items() if lane.tp in gone]
        running = [lane.task for _, lane in lanes if lane.task is not None]
        for _, lane in lanes:
            lane.waiting.clear()  # not started: the new owner reads them again
        if running:
            # Let what is on the wire finish, so its offsets can be committed before the hand-over.
            _, pending = await asyncio.wait(running, timeout=self._push.shutdown_grace_seconds)
            for task in pending:
                task.cancel()
        await self._commit(only=list(gone))
        for no, lane in lanes:
            if self._lanes.get(no) is lane:
                del self._lanes[no]
        for tp in gone:
            self._partitions.pop(tp, None)
            with contextlib.suppress(KeyError):
                self._metrics.consumer_lag.remove(tp.topic, str(tp.partition))
        if revoked:
            log.info("partitions revoked", partitions=sorted(tp.partition for tp in revoked))

    def _update_lag(self) -> None:
        for tp in self._consumer.assignment():
            highwater = self._consumer.highwater(tp)
            state = self._partitions.get(tp)
            point = state.watermark.commit_point if state is not None else None
            if highwater is not None and point is not None:
                self._metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(highwater - point, 0))
