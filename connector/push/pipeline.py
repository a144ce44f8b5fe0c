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
import collections
import contextlib
import functools
import hashlib
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, Protocol, TypeVar

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiolimiter import AsyncLimiter
from pydantic_core import to_json

from connector.batching import MicroBatcher, Settle
from connector.config import PortalSettings, PushSettings, Settings
from connector.errors import DeadlineExceeded, InternalError, RetryableError, SyncError
from connector.failures import ConsumedRecord, FailureRecorder
from connector.kafka import OffsetWatermark
from connector.observability import Metrics
from connector.portal.breaker import CircuitBreaker
from connector.portal.client import PUSH_STATUS
from connector.push.events import DossierEvent, decode_event
from connector.push.mapping import MappedEvent, Mappings, map_event
from connector.retry import call_with_retries
from connector.store import LedgerEntry, StateStore, StoreRefusedValue, Synced

log = structlog.get_logger(__name__)
T = TypeVar("T")
X = TypeVar("X")
R = TypeVar("R")

OutcomeKind = Literal["synced", "skipped", "failed"]


class Outcome(NamedTuple):  # a tuple, not a frozen dataclass: one is made per event, cheaply
    kind: OutcomeKind
    reason: str  # synced: created / updated / step / coalesced; skipped: the rule; failed: the error


class Portal(Protocol):
    """What the push side needs of the adapter client."""

    async def push_dossiers(self, records: Sequence[Mapping[str, Any]], *, updating: bool) -> bool: ...

    async def push_progress(self, steps: Sequence[Mapping[str, Any]]) -> None: ...

    async def push_status(self, data: Mapping[str, Any]) -> None: ...

    async def lookup(self, dossier_no: str) -> dict[str, Any] | None: ...


def hashed_record(record: Mapping[str, Any]) -> tuple[str, str]:
    """The record as JSON text, kept in the ledger, and a digest of it: one serialisation for both. Keys in
    the order the mapping builds them (the same code always builds the same order; a release that changes
    it costs one re-push per dossier, nothing worse)."""
    body = to_json(record)
    return body.decode("utf-8"), hashlib.sha256(body).hexdigest()


def unexpected_error(exc: BaseException, *, stage: str) -> SyncError:
    """``exc`` as one record's error: itself when it is one of ours, an ``InternalError`` (where, not what)
    otherwise. Without tracebacks: they hold frames that hold the record, until a full garbage collection."""
    if isinstance(exc, SyncError):
        return exc.with_traceback(None)
    error = InternalError(exc, stage=stage)
    error.__cause__ = exc.with_traceback(None)
    return error


def _size(record: ConsumedRecord) -> int:
    return len(record.value or b"") + len(record.key or b"")


# ---------------------------------------------------------------------------------------------------------
# Reading: one Kafka record → a mapped event, or a record-level error


@dataclass(slots=True)
class Admitted:
    """An event read, validated and mapped, waiting for its dossier's turn. Only what the unit needs is
    kept (the parsed event is not): thousands wait in flight."""

    record: ConsumedRecord  # the original bytes, for the DLQ if it fails
    tp: TopicPartition
    event_id: str
    mapped: MappedEvent
    admitted_at: float

    @property
    def no(self) -> str:
        return self.mapped.dossier_no

    @property
    def version(self) -> int:
        return self.mapped.version


@dataclass(frozen=True)
class Rejected:
    """An event that cannot be synced as it is (bad bytes, schema, contract, mapping)."""

    record: ConsumedRecord
    tp: TopicPartition
    error: SyncError
    event: DossierEvent | None  # when it decoded


_INDEX = re.compile(r"\[\d+\]")


class EventReader:
    def __init__(self, settings: Settings, mappings: Mappings, metrics: Metrics) -> None:
        self._max_bytes = settings.kafka.max_event_bytes
        self._mappings = mappings
        self._metrics = metrics

    def read(self, tp: TopicPartition, record: ConsumedRecord) -> Admitted | Rejected:
        """The event ready to sync, or why it cannot be synced as it is."""
        event: DossierEvent | None = None
        try:
            event = decode_event(record.key, record.value, max_bytes=self._max_bytes)
            mapped = map_event(event, self._mappings)
        except SyncError as error:
            # Without its traceback: the traceback holds this frame, which holds the error, a reference
            # cycle that would keep the event and its bytes alive until a full garbage collection.
            return Rejected(record, tp, error.with_traceback(None), event)
        except Exception as exc:  # noqa: BLE001 - a bug in pure code must not stall a partition: record it
            return Rejected(record, tp, unexpected_error(exc, stage="reading the event"), event)
        for cut in mapped.truncated:
            self._metrics.truncated_fields.labels(_INDEX.sub("[]", cut)).inc()
        return Admitted(record, tp, event.event_id, mapped, time.monotonic())


# ---------------------------------------------------------------------------------------------------------
# The adapter, protected: rate limit, concurrency, circuit breaker, waiting out outages


class BreakerOpen(RetryableError):
    """The circuit breaker holds calls back while the adapter is failing."""


@dataclass(eq=False)  # compared and hashed by identity: one per call
class _Patience:
    """One batch's (or record's) history of retryable failures, handed down when a batch is split: the
    record's deadline runs from its first failure in any batch."""

    healthy_at_first_failure: float | None = None
    answers_at_first_failure: int = 0
    attempts: int = 0
    failures_while_closed: int = 0  # of this batch itself, not handed down
    service: str = ""
    single: bool = True

    def for_half(self) -> _Patience:
        return _Patience(self.healthy_at_first_failure, self.answers_at_first_failure, self.attempts,
                         service=self.service)


class RecordPush(NamedTuple):
    record: dict[str, Any]
    updating: bool
    size: int


class PortalGateway:
    def __init__(self, portal: Portal, settings: PortalSettings, metrics: Metrics,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._portal = portal
        self._settings = settings
        self._metrics = metrics
        self._clock = clock
        # Capacity 1, refilled at the rate: no burst, so no 1-second window ever holds more than rate + 1.
        self._limiter = AsyncLimiter(1, 1 / settings.rate_limit.requests_per_second)
        self._concurrency = asyncio.Semaphore(settings.rate_limit.max_concurrent_requests)
        self._breaker = CircuitBreaker(settings.circuit_breaker, now=clock())
        self._waiting: set[_Patience] = set()  # calls retrying a service-wide error
        # Per service, calls the adapter answered (success or a record's own refusal): one service may be
        # down while the other answers.
        self._answers: collections.Counter[str] = collections.Counter()

    @property
    def unavailable(self) -> bool:
        """True while the breaker is open, or a batch waits out an error that nothing of its service has
        got past since it began (the adapter down): consumption should pause. A single record failing
        does not pause anything: new events must keep coming, or nothing could tell a record failing
        alone (its deadline deals with it) from an outage."""
        if self._breaker.state(self._clock()) == "open":
            return True
        return any(not p.single and p.answers_at_first_failure == self._answers[p.service] for p in self._waiting)

    async def push_records(self, pushes: list[RecordPush], settle: Settle[bool]) -> list[bool | BaseException]:
        """DongBoHoSoMC for a batch: creates and updates in separate calls. Per push: whether it was an
        update, or the error that belongs to that record; each settled as soon as it is known."""
        results: list[bool | BaseException] = [False] * len(pushes)

        async def one_kind(updating: bool) -> None:
            indexes = [i for i, p in enumerate(pushes) if p.updating is updating]
            if not indexes:
                return

            def settle_push(i: int, answer: bool | BaseException) -> None:
                results[indexes[i]] = answer
                settle(indexes[i], answer)

            send = functools.partial(self._portal.push_dossiers, updating=updating)
            await self._bisect("DongBoHoSoMC", [pushes[i].record for i in indexes], send, settle_push)

        await asyncio.gather(one_kind(False), one_kind(True))
        return results

    async def request(self, service: str, send: Callable[[], Awaitable[T]]) -> T:
        """Any other adapter call (the pull services), protected like a push: rate limit, breaker, and the
        wait-out of service-wide errors; a record-level error is raised."""
        return await self.call(service, send, _Patience(service=service))

    async def lookup(self, dossier_no: str) -> dict[str, Any] | None:
        """TraCuuHoSo: what the portal holds of one dossier (None: nothing), protected like a push."""
        return await self.request("TraCuuHoSo", lambda: self._portal.lookup(dossier_no))

    async def push_status(self, data: Mapping[str, Any]) -> None:
        """DongBoTrangThaiHoSo for one dossier that started on the national portal (its data is one object:
        one dossier per call), protected like a record push: service-wide errors are waited out until the
        record's deadline. Raises the record's own error, or DeadlineExceeded."""
        patience = _Patience(service=PUSH_STATUS)
        try:
            await self.call(PUSH_STATUS, lambda: self._portal.push_status(data), patience)
        except SyncError as error:
            if error.affects_every_record:  # as for a record alone in _bisect: past its deadline
                raise self._gave_up(error, patience) from None
            raise

    async def push_steps(self, groups: list[list[dict[str, Any]]],
                         settle: Settle[None]) -> list[BaseException | None]:
        """CapNhatTienDoHoSoMC for a batch of step groups (each one dossier's steps, in order)."""
        results: list[BaseException | None] = [None] * len(groups)

        async def send(chunk: list[list[dict[str, Any]]]) -> None:
            await self._portal.push_progress([step for group in chunk for step in group])

        def settle_group(i: int, answer: BaseException | None) -> None:
            results[i] = answer
            settle(i, answer)

        await self._bisect("CapNhatTienDoHoSoMC", groups, send, settle_group)
        return results

    async def _bisect(
        self, service: str, items: list[X], send: Callable[[list[X]], Awaitable[R]],
        settle: Callable[[int, R | BaseException], None], start: int = 0, patience: _Patience | None = None,
    ) -> None:
        """One bad record must not fail the others: split a refused batch until the refused ones remain.
        A batch that keeps failing retryably while the adapter is otherwise healthy is split too, and a
        record that still fails alone past its deadline becomes its own failure. Each item is settled
        (``settle(start + i, answer)``) as soon as its answer is known."""
        patience = patience or _Patience()
        patience.service, patience.single = service, len(items) == 1
        try:
            answer = await self.call(service, lambda: send(items), patience)
        except SyncError as error:
            if len(items) == 1:
                settle(start, self._gave_up(error, patience) if error.affects_every_record else error)
                return
        else:
            for i in range(len(items)):
                settle(start + i, answer)
            return
        middle = len(items) // 2
        # Side by side: the half without the bad record must not wait for the other half's deadline.
        await asyncio.gather(
            self._bisect(service, items[:middle], send, settle, start, patience.for_half()),
            self._bisect(service, items[middle:], send, settle, start + middle, patience.for_half()))

    def _counts_against_the_adapter(self, service: str, patience: _Patience) -> bool:
        """A first failure, a failed probe, or a batch that nothing of its service has got past since it
        began count in the breaker. The retries of a single record do not: one record failing alone must
        not open the breaker for everyone else."""
        if patience.attempts == 0 or self._breaker.state(self._clock()) != "closed":
            return True
        return not patience.single and self._answers[service] == patience.answers_at_first_failure

    def _gave_up(self, last: SyncError, patience: _Patience) -> DeadlineExceeded:
        healthy = self._breaker.healthy_seconds(self._clock()) - (patience.healthy_at_first_failure or 0.0)
        return DeadlineExceeded(last, attempts=patience.attempts, seconds=healthy)

    def _give_up(self, patience: _Patience) -> bool:
        """Has this batch (or record) failed retryably long enough, while the adapter was otherwise
        healthy, to be the trouble itself?"""
        now = self._clock()
        patience.attempts += 1
        if patience.healthy_at_first_failure is None:
            patience.healthy_at_first_failure = self._breaker.healthy_seconds(now)
            patience.answers_at_first_failure = self._answers[patience.service]
        if not patience.single:
            # Splitting costs only calls; but not while the breaker is open (an outage): batches that
            # would go out as single records afterwards would drain the backlog slowly.
            if self._breaker.state(now) == "closed":
                patience.failures_while_closed += 1
            return patience.failures_while_closed >= self._settings.retry.split_batch_after_attempts
        if self._answers[patience.service] == patience.answers_at_first_failure:
            return False  # nothing got through since: the adapter is down, not this record
        waited = self._breaker.healthy_seconds(now) - patience.healthy_at_first_failure
        return waited >= self._settings.retry.record_deadline_seconds

    async def call(self, service: str, send: Callable[[], Awaitable[T]], patience: _Patience) -> T:
        """One adapter call, retried while the cause is service-wide; record-level errors are raised, and
        so is the service-wide one once ``patience`` says the call itself is the trouble."""

        def on_retry(svc: str, reason: str, attempt: int) -> None:
            self._metrics.retries.labels(svc, reason).inc()
            if patience not in self._waiting:
                self._waiting.add(patience)
                self._metrics.service_waits.labels(reason).inc()
            self._metrics.waiting.set(1 if self.unavailable else 0)

        try:
            return await call_with_retries(
                lambda: self._attempt(service, send, patience), service=service, policy=self._settings.retry,
                on_retry=on_retry, give_up=lambda _error, _attempt: self._give_up(patience))
        finally:
            if patience in self._waiting:
                self._waiting.discard(patience)
                self._metrics.waiting.set(1 if self.unavailable else 0)

    async def _attempt(self, service: str, send: Callable[[], Awaitable[T]], patience: _Patience) -> T:
        now = self._clock()
        if not self._breaker.allow(now):
            raise BreakerOpen("the adapter is failing; calls are held back", reason="circuit_open",
                              retry_after=max(self._breaker.seconds_until_probe(now), 0.1))
        async with self._limiter, self._concurrency:
            try:
                result = await send()
            except SyncError as error:
                if not error.affects_every_record:
                    self._answers[service] += 1
                    self._breaker.record_success(self._clock())  # it answered: it is up
                elif self._counts_against_the_adapter(service, patience):
                    self._breaker.record_failure(self._clock())
                raise
        self._answers[service] += 1
        self._breaker.record_success(self._clock())
        return result


# ---------------------------------------------------------------------------------------------------------
# One dossier's waiting events → one unit of work


def _payload(mapped: MappedEvent) -> dict[str, Any]:
    """What was (or would have been) sent for one event, for the failure table."""
    return {PUSH_STATUS if mapped.status_back else "DongBoHoSoMC": mapped.record, "CapNhatTienDoHoSoMC": mapped.step}


def _chunks(items: list[T], size: int) -> list[list[T]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


async def _split(items: list[X], send: Callable[[list[X]], Awaitable[list[R | BaseException]]],
                 refused: StoreRefusedValue) -> list[R | BaseException]:
    """A batch the state store refused for a value of one of its rows, halved until that row is alone: it is
    that record's failure; the other rows are written (or read)."""
    if len(items) == 1:
        return [refused.with_traceback(None)]
    middle = len(items) // 2
    return [*await send(items[:middle]), *await send(items[middle:])]


def ledger_version(entry: LedgerEntry | None) -> int:
    """The newest version the portal acknowledged; an event at or below it is never sent again."""
    return entry.last_version if entry is not None else 0


class DossierSync:
    def __init__(self, *, settings: Settings, store: StateStore, gateway: PortalGateway,
                 failures: FailureRecorder) -> None:
        push = settings.push
        self._push = push
        self._store = store
        self._gateway = gateway
        self._retry = settings.portal.retry
        self._failures = failures
        concurrent = settings.portal.rate_limit.max_concurrent_requests
        linger = push.linger_ms / 1000
        self._reads: MicroBatcher[str, LedgerEntry | None] = MicroBatcher(
            self._read_ledger, max_weight=500, max_bytes=1 << 30, linger_seconds=0.002,
            max_concurrent_batches=4)
        self._records: MicroBatcher[RecordPush, bool] = MicroBatcher.settling(
            gateway.push_records, max_weight=push.max_batch_records, max_bytes=push.max_batch_bytes,
            linger_seconds=linger, max_concurrent_batches=concurrent, size_of=lambda p: p.size)
        self._steps: MicroBatcher[list[dict[str, Any]], None] = MicroBatcher.settling(
            gateway.push_steps, max_weight=push.max_batch_records, max_bytes=push.max_batch_bytes,
            linger_seconds=linger, max_concurrent_batches=concurrent, weight_of=len)
        self._writes: MicroBatcher[Synced, None] = MicroBatcher(
            self._write_ledger, max_weight=500, max_bytes=1 << 30, linger_seconds=0.002,
            max_concurrent_batches=1)
        self._batchers = (self._reads, self._records, self._steps, self._writes)

    def start(self) -> None:
        for batcher in self._batchers:
            batcher.start()
        self._failures.start()

    async def close(self) -> None:
        for batcher in self._batchers:
            await batcher.close()
        await self._failures.close()

    async def _read_ledger(self, dossier_nos: list[str]) -> list[LedgerEntry | BaseException | None]:
        try:
            entries = await call_with_retries(lambda: self._store.get_many(dossier_nos), service="state_store",
                                              policy=self._retry)
        except StoreRefusedValue as refused:
            return await _split(dossier_nos, self._read_ledger, refused)
        return [entries.get(no) for no in dossier_nos]

    async def _write_ledger(self, synced: list[Synced]) -> list[BaseException | None]:
        try:
            await call_with_retries(lambda: self._store.record_synced_many(synced), service="state_store",
                                    policy=self._retry)
        except StoreRefusedValue as refused:
            return await _split(synced, self._write_ledger, refused)
        return [None] * len(synced)

    async def run_unit(self, items: list[Admitted]) -> list[Outcome]:
        """Everything waiting for one dossier, in version order → one outcome per event. Whatever the dossier's
        content makes go wrong ends as its events' recorded failures; only failing to record them raises."""
        no = items[0].no
        try:
            entry = await self._reads.submit(no)
        except Exception as exc:  # noqa: BLE001 - one dossier's trouble is its own failure, never the daemon's
            return await self._fail(no, items, unexpected_error(exc, stage="reading the ledger"), service=None)
        outcomes: list[Outcome | None] = [None] * len(items)
        live: list[int] = []
        for index, item in enumerate(items):
            newest_so_far = items[live[-1]].version if live else ledger_version(entry)
            if item.version <= newest_so_far:
                same = item.version == newest_so_far
                outcomes[index] = Outcome("skipped", "duplicate" if same else "stale_version")
            else:
                live.append(index)
        if live:
            for index, outcome in zip(live, await self._sync(no, [items[i] for i in live], entry), strict=True):
                outcomes[index] = outcome
        return [o for o in outcomes if o is not None]

    async def _sync(self, no: str, live: list[Admitted], entry: LedgerEntry | None) -> list[Outcome]:
        newest = live[-1]
        mapped = newest.mapped
        exists = entry is not None and entry.exists_on_portal
        steps = [item.mapped.step for item in live if item.mapped.step is not None]
        how = "step"
        service = PUSH_STATUS if mapped.status_back else "DongBoHoSoMC"
        try:
            record_text, digest = hashed_record(mapped.record)
            # Steps need the dossier on the portal; an unchanged record need not be sent again.
            if not exists or entry is None or entry.record_hash != digest:
                if mapped.status_back:
                    # Started on the national portal: its state goes back, one dossier per call.
                    await self._gateway.push_status(mapped.record)
                    how = "status_back"
                else:
                    size = len(newest.record.value or b"")
                    was_update = await self._records.submit(RecordPush(mapped.record, exists, size))
                    how = "updated" if was_update else "created"
            service = "CapNhatTienDoHoSoMC"
            for chunk in _chunks(steps, self._push.max_batch_records):
                await self._steps.submit(chunk)
            await self._writes.submit(Synced(no, newest.version, digest, newest.event_id, record_text,
                                             mapped.agency_code, mapped.procedure_code, mapped.received_at, how))
        except Exception as exc:  # noqa: BLE001 - record-level: service-wide errors were waited out below us
            return await self._fail(no, live, unexpected_error(exc, stage="syncing the dossier"), service)
        older = [Outcome("synced", "step" if item.mapped.step is not None else "coalesced") for item in live[:-1]]
        return [*older, Outcome("synced", how)]

    async def _fail(self, no: str, items: list[Admitted], error: SyncError, service: str | None) -> list[Outcome]:
        """Each of ``items`` recorded as failed with ``error``; raises only when the failure cannot be recorded
        (the DLQ unreachable): then nothing is committed past them."""
        await asyncio.gather(*(
            self._failures.record(item.record, error, dossier_no=no, event_id=item.event_id,
                                  event_version=item.version, service=service,
                                  mapped_payload=_payload(item.mapped))
            for item in items))
        return [Outcome("failed", error.reason)] * len(items)


# ---------------------------------------------------------------------------------------------------------
# Kafka side: admission, lanes, watermarks, commits, back-pressure, rebalances


@dataclass
class _Lane:
    tp: TopicPartition
    partition: _PartitionState  # the assignment its events were read under
    waiting: list[Admitted] = field(default_factory=list)
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
        state.bytes += _size(record)
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

    async def _run_unit(self, no: str, lane: _Lane, items: list[Admitted]) -> None:
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
        state.bytes -= _size(record)

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
        for tp, offset in offsets.items():
            if tp in self._partitions:  # a revocation may have dropped it while the commit was on the wire
                self._partitions[tp].committed = offset
        log.debug("offsets committed", offsets={f"{tp.topic}[{tp.partition}]": o for tp, o in offsets.items()})

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
