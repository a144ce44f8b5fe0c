"""One dossier's unit of work: read an event (decode, validate, map: pure), then, for everything waiting for one
dossier, push the newest record and every step in order through the gateway's micro-batchers and write the
ledger. Whatever one dossier's content makes go wrong ends as its events' recorded failures.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, TypeVar

import structlog
from aiokafka import TopicPartition
from pydantic_core import to_json

from connector.batching import MicroBatcher
from connector.config import Settings
from connector.errors import InternalError, SyncError
from connector.failures import ConsumedRecord, FailureRecorder
from connector.observability import Metrics
from connector.portal.client import PUSH_STATUS
from connector.portal.gateway import PortalGateway, RecordPush
from connector.push.events import DossierEvent, decode_event
from connector.push.mapping import MappedEvent, Mappings, map_event
from connector.retry import call_with_retries
from connector.stats.facts import DossierFacts, EventFacts, event_facts, facts_from_row, facts_row, fold
from connector.store import LedgerEntry, StateStore, StoreRefusedValue, Synced

log = structlog.get_logger(__name__)
T = TypeVar("T")
X = TypeVar("X")
R = TypeVar("R")



OutcomeKind = Literal["synced", "skipped", "failed"]


class Outcome(NamedTuple):  # a tuple, not a frozen dataclass: one is made per event, cheaply
    kind: OutcomeKind
    reason: str  # synced: created / updated / step / coalesced; skipped: the rule; failed: the error


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


def message_size(record: ConsumedRecord) -> int:
    return len(record.value or b"") + len(record.key or b"")


# ---------------------------------------------------------------------------------------------------------
# Reading: one Kafka record → a mapped event, or a record-level error


@dataclass(slots=True)
class PendingEvent:
    """An event read, validated and mapped, waiting for its dossier's turn. Only what the unit needs is
    kept (the parsed event is not): thousands wait in flight."""

    record: ConsumedRecord  # the original bytes, for the DLQ if it fails
    tp: TopicPartition
    event_id: str
    mapped: MappedEvent
    admitted_at: float
    facts: EventFacts  # what it says for statistics: every event's are folded, coalesced or not

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

    def read(self, tp: TopicPartition, record: ConsumedRecord) -> PendingEvent | Rejected:
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
        procedure = self._mappings.procedures.get(event.dossier.procedure_code)
        facts = event_facts(event, national_status=mapped.national_status,
                            field_code=procedure.field_code if procedure is not None else "",
                            due_at=mapped.due_at, due_from_limit=mapped.due_from_limit)
        return PendingEvent(record, tp, event.event_id, mapped, time.monotonic(), facts)


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


class Known(NamedTuple):
    """What the store knows of a dossier when its unit starts."""

    entry: LedgerEntry | None
    facts: dict[str, Any] | None  # its dossier_facts row


def _folded(no: str, known: dict[str, Any] | None, live: list[PendingEvent]) -> DossierFacts:
    """The dossier's statistics facts with every event of the unit folded in, oldest first."""
    facts = facts_from_row(known) if known is not None else None
    for item in live:
        facts = fold(facts, no, item.facts)
    assert facts is not None  # a unit has at least one event
    return facts


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
        self._reads: MicroBatcher[str, Known] = MicroBatcher(
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

    async def _read_ledger(self, dossier_nos: list[str]) -> list[Known | BaseException]:
        try:
            entries, facts = await call_with_retries(lambda: self._store.get_many_with_facts(dossier_nos),
                                                     service="state_store", policy=self._retry)
        except StoreRefusedValue as refused:
            return await _split(dossier_nos, self._read_ledger, refused)
        return [Known(entries.get(no), facts.get(no)) for no in dossier_nos]

    async def _write_ledger(self, synced: list[Synced]) -> list[BaseException | None]:
        try:
            await call_with_retries(lambda: self._store.record_synced_many(synced), service="state_store",
                                    policy=self._retry)
        except StoreRefusedValue as refused:
            return await _split(synced, self._write_ledger, refused)
        return [None] * len(synced)

    async def run_unit(self, items: list[PendingEvent]) -> list[Outcome]:
        """Everything waiting for one dossier, in version order → one outcome per event. Whatever the dossier's
        content makes go wrong ends as its events' recorded failures; only failing to record them raises."""
        no = items[0].no
        try:
            entry, known_facts = await self._reads.submit(no)
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
            for index, outcome in zip(live, await self._sync(no, [items[i] for i in live], entry, known_facts),
                                      strict=True):
                outcomes[index] = outcome
        return [o for o in outcomes if o is not None]

    async def _sync(self, no: str, live: list[PendingEvent], entry: LedgerEntry | None,
                    known_facts: dict[str, Any] | None) -> list[Outcome]:
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
            facts = _folded(no, known_facts, live)
            await self._writes.submit(Synced(no, newest.version, digest, newest.event_id, record_text,
                                             mapped.agency_code, mapped.procedure_code, mapped.received_at, how,
                                             facts_row(facts)))
        except Exception as exc:  # noqa: BLE001 - record-level: service-wide errors were waited out below us
            return await self._fail(no, live, unexpected_error(exc, stage="syncing the dossier"), service)
        older = [Outcome("synced", "step" if item.mapped.step is not None else "coalesced") for item in live[:-1]]
        return [*older, Outcome("synced", how)]

    async def _fail(self, no: str, items: list[PendingEvent], error: SyncError, service: str | None) -> list[Outcome]:
        """Each of ``items`` recorded as failed with ``error``; raises only when the failure cannot be recorded
        (the DLQ unreachable): then nothing is committed past them."""
        await asyncio.gather(*(
            self._failures.record(item.record, error, dossier_no=no, event_id=item.event_id,
                                  event_version=item.version, service=service,
                                  mapped_payload=_payload(item.mapped))
            for item in items))
        return [Outcome("failed", error.reason)] * len(items)
