"""Replay: failed events read again from their stored bytes with the **current** mappings, and pushed
through the path live events take (rate limit, retries, breaker, batching, the ledger's version check).

Each failure ends in one of three states:
- ``replayed``: the portal took it now;
- ``resolved``: nothing to send, the portal already holds this version or a newer one (the ledger says
  so); an older state is never pushed over a newer one;
- ``open``: it failed again; the new error is added to its attempts.

A replay running beside the daemon does not race it: both go through the ledger's version check, and
the ledger never moves a dossier backwards. A dry run reads and checks everything and sends nothing.

A dry run and a replay answer alike: a ``ReplayReport`` of one ``ReplayItem`` per failure. It is the admin
API's reply and what ``portal-sync replay --json`` prints (``schemas/admin-api.openapi.yaml``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from connector.config import KafkaSettings, Settings
from connector.errors import RetryableError
from connector.failures import ConsumedRecord, FailureRecorder, failure_from_dead_letter
from connector.kafka import read_topic
from connector.observability import Metrics
from connector.operators.reconcile import Reconciler
from connector.portal.gateway import PortalGateway, open_gateway
from connector.push.mapping import Mappings
from connector.push.sync import DossierSync, EventReader, PendingEvent, Rejected, ledger_version
from connector.store import Failure, FailureFilter, StateStore, failure_row, kafka_headers

ReplayState = Literal["replayed", "resolved", "open"]
ReplayAction = Literal["send", "superseded", "unreadable"]


@dataclass  # not frozen: it stands in for aiokafka's ConsumerRecord, whose fields are plain attributes
class StoredRecord:
    """A Kafka record as the failure table kept it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes | None]]

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> StoredRecord:
        return cls(row["topic"], row["partition"], row["offset"], row["record_key"], row["record_value"],
                   kafka_headers(row["record_headers"]))


@dataclass(frozen=True)
class ReplayItem:
    """What a replay did with one failure, or what it would do (a dry run)."""

    failure_id: int | None  # None: a DLQ record a dry run read, which the failure table lacks
    dossier_no: str | None
    version: int | None  # the event's
    action: ReplayAction  # send, superseded (the portal already has it or newer), unreadable (or not kept)
    state: ReplayState | None  # the failure's state after the replay; None in a dry run, which changes nothing
    detail: str
    payload: dict[str, Any] | None  # the event mapped now: {"DongBoHoSoMC": record, "CapNhatTienDoHoSoMC": step}


@dataclass(frozen=True)
class DlqIntake:
    """What a replay from the DLQ read there."""

    read: int  # DLQ records read
    known: int  # of them, records the failure table has
    missing: int  # the others' originals: added to the table and replayed (a dry run: would be)


@dataclass(frozen=True)
class ReplayReport:
    """A replay's answer, dry run or not."""

    dry_run: bool
    failures: list[ReplayItem]
    dlq: DlqIntake | None = None  # None: the DLQ was not read

    @property
    def counts(self) -> dict[str, int]:
        """Items per state; in a dry run (no states), per action. Only those that occur."""
        keys = [item.action if self.dry_run else item.state for item in self.failures]
        return dict(Counter(key for key in keys if key is not None))

    def as_json(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "failures": [asdict(item) for item in self.failures],
                "counts": self.counts, "dlq": asdict(self.dlq) if self.dlq is not None else None}


class DlqUnreadable(RetryableError):
    """The DLQ topic could not be read (the broker away, or the topic missing)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="dlq_unreadable")


_NOT_KEPT = "the event was too large to keep; replay it from the DLQ"


def _unreadable_detail(rejected: Rejected) -> str:
    error = rejected.error
    return f"{error.reason}: {error}" + (f" (field {error.field})" if error.field else "")


def _payload(event: PendingEvent) -> dict[str, Any]:
    return {"DongBoHoSoMC": event.mapped.record, "CapNhatTienDoHoSoMC": event.mapped.step}


def _ignore(_item: ReplayItem) -> None:
    pass


class Replayer:
    def __init__(self, *, settings: Settings, store: StateStore, reader: EventReader, sync: DossierSync,
                 failures: FailureRecorder, changed_by: str, reconciler: Reconciler | None = None) -> None:
        self.store = store
        self._reader = reader
        self._sync = sync
        self._reconciler = reconciler
        self._failures = failures
        self._changed_by = changed_by
        self._concurrency = max(1, settings.portal.rate_limit.max_concurrent_requests * 8)

    def _read(self, row: Mapping[str, Any]) -> PendingEvent | Rejected | None:
        record = StoredRecord.from_row(row)
        if record.value is None and row["reason"] == "too_large":
            return None  # its bytes were never kept: only the DLQ's headers say where it lies
        return self._reader.read(TopicPartition(record.topic, record.partition), record)

    async def run(self, rows: Sequence[Mapping[str, Any]], *, dry_run: bool,
                  on_done: Callable[[ReplayItem], None] = _ignore) -> ReplayReport:
        """Replay ``rows``, or plan it (``dry_run``)."""
        if dry_run:
            planned = await self.plan(rows)
            for item in planned:
                on_done(item)
            return ReplayReport(True, planned)
        return ReplayReport(False, await self.replay(rows, on_done))

    async def plan(self, rows: Sequence[Mapping[str, Any]]) -> list[ReplayItem]:
        """What a replay of ``rows`` would do now; nothing is sent or changed."""
        read = [(row, self._read(row)) for row in rows]
        nos = sorted({r.no for _, r in read if isinstance(r, PendingEvent)})
        ledger = await self.store.get_many(nos) if nos else {}
        planned: list[ReplayItem] = []
        for row, result in read:
            if result is None:
                planned.append(ReplayItem(row["id"], row["dossier_no"], row["event_version"], "unreadable", None,
                                          _NOT_KEPT, None))
            elif isinstance(result, Rejected):
                planned.append(ReplayItem(row["id"], row["dossier_no"], row["event_version"], "unreadable", None,
                                          _unreadable_detail(result), None))
            else:
                on_portal = ledger_version(ledger.get(result.no))
                if result.version <= on_portal:  # the rule DossierSync.run_unit applies
                    planned.append(ReplayItem(row["id"], result.no, result.version, "superseded", None,
                                              f"the portal already has version {on_portal}", _payload(result)))
                else:
                    planned.append(ReplayItem(row["id"], result.no, result.version, "send", None,
                                              "record and step" if result.mapped.step else "record",
                                              _payload(result)))
        return planned

    async def replay(self, rows: Sequence[Mapping[str, Any]],
                     on_done: Callable[[ReplayItem], None] = _ignore) -> list[ReplayItem]:
        """Replay ``rows``; each failure's outcome is reported to ``on_done`` as soon as it is known."""
        done: list[ReplayItem] = []

        def report(outcome: ReplayItem) -> None:
            done.append(outcome)
            on_done(outcome)

        by_dossier: dict[str, list[tuple[Mapping[str, Any], PendingEvent]]] = defaultdict(list)
        for row in rows:
            result = self._read(row)
            if result is None:
                report(ReplayItem(row["id"], row["dossier_no"], row["event_version"], "unreadable", "open", _NOT_KEPT,
                                  None))
            elif isinstance(result, Rejected):
                await self._failures.record(result.record, result.error, dossier_no=row["dossier_no"],
                                            event_id=row["event_id"], event_version=row["event_version"])
                report(ReplayItem(row["id"], row["dossier_no"], row["event_version"], "unreadable", "open",
                                  _unreadable_detail(result), None))
            else:
                by_dossier[result.no].append((row, result))
        limit = asyncio.Semaphore(self._concurrency)

        async def one_dossier(items: list[tuple[Mapping[str, Any], PendingEvent]]) -> None:
            async with limit:
                items.sort(key=lambda pair: pair[1].version)
                outcomes = await self._sync.run_unit([admitted for _, admitted in items])
            for (row, admitted), outcome in zip(items, outcomes, strict=True):
                action: ReplayAction = "send"
                if outcome.kind == "synced":
                    state: ReplayState = "replayed"
                    detail = f"sent ({outcome.reason})"
                elif outcome.kind == "skipped":
                    action, state = "superseded", "resolved"
                    detail = f"superseded: the portal already has this version or a newer one ({outcome.reason})"
                else:
                    state, detail = "open", f"failed again: {outcome.reason}"
                if state != "open":
                    await self.store.set_failure_state(row["id"], state, by=self._changed_by, reason=detail)
                report(ReplayItem(row["id"], admitted.no, admitted.version, action, state, detail, _payload(admitted)))

        await asyncio.gather(*(one_dossier(items) for items in by_dossier.values()))
        await self._resend_where_the_daemon_moved_on(done)
        return done

    async def _resend_where_the_daemon_moved_on(self, done: Sequence[ReplayItem]) -> None:
        """A replayed version may have reached the portal after a newer one the daemon synced meanwhile
        (the ledger then refused ours): send the ledger's newest state of those dossiers again."""
        sent: dict[str, int] = {}
        for o in done:
            if o.state == "replayed" and o.dossier_no is not None:
                sent[o.dossier_no] = max(sent.get(o.dossier_no, 0), o.version or 0)
        if self._reconciler is None or not sent:
            return
        newest = await self.store.ledger_records_of(list(sent))
        moved_on = [record for no, record in newest.items() if record.version > sent[no]]
        if moved_on:
            await self._reconciler.send(moved_on, outcome="updated")

    async def from_dlq(self, kafka: KafkaSettings, *, since: datetime | None, dry_run: bool,
                       on_found: Callable[[int], None] = lambda _n: None,
                       on_done: Callable[[ReplayItem], None] = _ignore) -> ReplayReport:
        """Take in the DLQ records (dead-lettered at or after ``since``) that the failure table lacks, and
        replay them; a dry run plans them and adds nothing. ``on_found`` learns how many there are once the
        DLQ is read, ``on_done`` each one's outcome. DlqUnreadable when the topic cannot be read."""
        topic = kafka.topics.dead_letter
        try:
            found = await dead_letters_missing(self.store, read_topic(
                kafka, topic, since_ms=int(since.timestamp() * 1000) if since is not None else None))
        except (KafkaError, TimeoutError, UnicodeDecodeError) as exc:
            raise DlqUnreadable(f"the DLQ topic {topic} could not be read ({type(exc).__name__}: {exc})") from exc
        on_found(len(found.missing))
        items: list[ReplayItem] = []
        for start in range(0, len(found.missing), _DLQ_CHUNK):
            chunk = found.missing[start:start + _DLQ_CHUNK]
            if dry_run:  # rows as the table would hold them, without an id: nothing is added
                now = datetime.now(UTC)
                rows = [{**failure_row(failure, now), "id": None} for failure in chunk]
            else:
                await self.store.record_failures(chunk)
                ids = await self.store.known_failures([(f.topic, f.partition, f.offset) for f in chunk])
                rows = await self.store.list_failures(FailureFilter(ids=list(ids.values()), states=()), limit=None)
            items += (await self.run(rows, dry_run=dry_run, on_done=on_done)).failures
        return ReplayReport(dry_run, items, DlqIntake(found.read, found.known, len(found.missing)))


@contextlib.asynccontextmanager
async def open_replayer(settings: Settings, mappings: Mappings, *, changed_by: str,
                        store: StateStore | None = None, gateway: PortalGateway | None = None,
                        metrics: Metrics | None = None) -> AsyncIterator[Replayer]:
    """A replayer with its own connections, or sharing a running daemon's store and gateway (so that a
    replay from the admin API counts against the same rate limit and breaker)."""
    async with contextlib.AsyncExitStack() as stack:
        metrics = metrics or Metrics()
        if store is None:
            store = await StateStore.open(settings.state.url)
            stack.push_async_callback(store.close)
        if gateway is None:
            gateway = open_gateway(settings, store, metrics, stack).gateway
        failures = FailureRecorder(store, None, settings.portal.retry, origin="replay")
        sync = DossierSync(settings=settings, store=store, gateway=gateway, failures=failures)
        sync.start()
        stack.push_async_callback(sync.close)
        yield Replayer(settings=settings, store=store, reader=EventReader(settings, mappings, metrics),
                       sync=sync, failures=failures, changed_by=changed_by,
                       reconciler=Reconciler.for_settings(store, gateway, settings))


_DLQ_CHUNK = 500  # DLQ records added and replayed at a time


@dataclass(frozen=True)
class DeadLetters:
    """What a read of the DLQ found."""

    read: int  # DLQ records read
    known: int  # of them, records the failure table has
    missing: list[Failure]  # the others, one per original record (a DLQ may hold one twice after a crash)


async def dead_letters_missing(store: StateStore, batches: AsyncIterator[Sequence[ConsumedRecord]]) -> DeadLetters:
    """The DLQ records whose original is not in the failure table (another instance's store, a store
    restored from backup): so nothing on the DLQ is out of a replay's reach."""
    read = known = 0
    missing: dict[tuple[str, int, int], Failure] = {}
    async for batch in batches:
        read += len(batch)
        failures = [failure_from_dead_letter(record) for record in batch]
        present = await store.known_failures([(f.topic, f.partition, f.offset) for f in failures])
        for failure in failures:
            where = (failure.topic, failure.partition, failure.offset)
            if where in present:
                known += 1
            else:
                missing[where] = failure  # the later copy: its error is the newer
    return DeadLetters(read, known, list(missing.values()))
