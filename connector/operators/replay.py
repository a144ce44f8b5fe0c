"""Replay: failed events read again from their stored bytes with the **current** mappings, and pushed
through the path live events take (rate limit, retries, breaker, batching, the ledger's version check).

Each failure ends in one of three states:
- ``replayed``: the portal took it now;
- ``resolved``: nothing to send, the portal already holds this version or a newer one (the ledger says
  so); an older state is never pushed over a newer one;
- ``open``: it failed again; the new error is added to its attempts.

A replay running beside the daemon does not race it: both go through the ledger's version check, and
the ledger never moves a dossier backwards. A dry run reads and checks everything and sends nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from aiokafka import TopicPartition

from connector.config import Settings
from connector.failures import ConsumedRecord, FailureRecorder, failure_from_dead_letter
from connector.observability import Metrics
from connector.operators.realign import Realigner
from connector.portal.gateway import open_connections
from connector.push.mapping import Mappings
from connector.push.pipeline import Admitted, DossierSync, EventReader, PortalGateway, Rejected, ledger_version
from connector.store import Failure, StateStore, kafka_headers

ReplayState = Literal["replayed", "resolved", "open"]
PlannedAction = Literal["send", "superseded", "unreadable"]


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
class Planned:
    """What a replay would do with one failure."""

    failure_id: int | None  # None: taken from the DLQ in a dry run, not in the table
    dossier_no: str | None
    version: int | None
    action: PlannedAction
    detail: str
    payload: dict[str, Any] | None  # what would be sent: {"DongBoHoSoMC": record, "CapNhatTienDoHoSoMC": step}


@dataclass(frozen=True)
class Replayed:
    failure_id: int
    dossier_no: str | None
    version: int | None
    state: ReplayState
    detail: str


_NOT_KEPT = "the event was too large to keep; replay it from the DLQ"


def _unreadable_detail(rejected: Rejected) -> str:
    error = rejected.error
    return f"{error.reason}: {error}" + (f" (field {error.field})" if error.field else "")


class Replayer:
    def __init__(self, *, settings: Settings, store: StateStore, reader: EventReader, sync: DossierSync,
                 failures: FailureRecorder, changed_by: str, realigner: Realigner | None = None) -> None:
        self.store = store
        self._reader = reader
        self._sync = sync
        self._realigner = realigner
        self._failures = failures
        self._changed_by = changed_by
        self._concurrency = max(1, settings.portal.rate_limit.max_concurrent_requests * 8)

    def _read(self, row: Mapping[str, Any]) -> Admitted | Rejected | None:
        record = StoredRecord.from_row(row)
        if record.value is None and row["reason"] == "too_large":
            return None  # its bytes were never kept: only the DLQ's headers say where it lies
        return self._reader.read(TopicPartition(record.topic, record.partition), record)

    async def plan(self, rows: Sequence[Mapping[str, Any]]) -> list[Planned]:
        """What a replay of ``rows`` would do now; nothing is sent or changed."""
        read = [(row, self._read(row)) for row in rows]
        nos = sorted({r.no for _, r in read if isinstance(r, Admitted)})
        ledger = await self.store.get_many(nos) if nos else {}
        planned: list[Planned] = []
        for row, result in read:
            if result is None:
                planned.append(Planned(row["id"], row["dossier_no"], row["event_version"], "unreadable",
                                       _NOT_KEPT, None))
            elif isinstance(result, Rejected):
                planned.append(Planned(row["id"], row["dossier_no"], row["event_version"], "unreadable",
                                       _unreadable_detail(result), None))
            else:
                on_portal = ledger_version(ledger.get(result.no))
                payload = {"DongBoHoSoMC": result.mapped.record, "CapNhatTienDoHoSoMC": result.mapped.step}
                if result.version <= on_portal:  # the rule DossierSync.run_unit applies
                    planned.append(Planned(row["id"], result.no, result.version, "superseded",
                                           f"the portal already has version {on_portal}", payload))
                else:
                    planned.append(Planned(row["id"], result.no, result.version, "send",
                                           "record and step" if result.mapped.step else "record", payload))
        return planned

    async def replay(self, rows: Sequence[Mapping[str, Any]],
                     on_done: Callable[[Replayed], None] = lambda _r: None) -> list[Replayed]:
        """Replay ``rows``; each failure's outcome is reported to ``on_done`` as soon as it is known."""
        done: list[Replayed] = []

        def report(outcome: Replayed) -> None:
            done.append(outcome)
            on_done(outcome)

        by_dossier: dict[str, list[tuple[Mapping[str, Any], Admitted]]] = defaultdict(list)
        for row in rows:
            result = self._read(row)
            if result is None:
                report(Replayed(row["id"], row["dossier_no"], row["event_version"], "open", _NOT_KEPT))
            elif isinstance(result, Rejected):
                await self._failures.record(result.record, result.error, dossier_no=row["dossier_no"],
                                            event_id=row["event_id"], event_version=row["event_version"])
                report(Replayed(row["id"], row["dossier_no"], row["event_version"], "open",
                                _unreadable_detail(result)))
            else:
                by_dossier[result.no].append((row, result))
        limit = asyncio.Semaphore(self._concurrency)

        async def one_dossier(items: list[tuple[Mapping[str, Any], Admitted]]) -> None:
            async with limit:
                items.sort(key=lambda pair: pair[1].version)
                outcomes = await self._sync.run_unit([admitted for _, admitted in items])
            for (row, admitted), outcome in zip(items, outcomes, strict=True):
                if outcome.kind == "synced":
                    state: ReplayState = "replayed"
                    detail = f"sent ({outcome.reason})"
                elif outcome.kind == "skipped":
                    state, detail = "resolved", f"superseded: the portal already has this version or a newer one " \
                                                f"({outcome.reason})"
                else:
                    state, detail = "open", f"failed again: {outcome.reason}"
                if state != "open":
                    await self.store.set_failure_state(row["id"], state, by=self._changed_by, reason=detail)
                report(Replayed(row["id"], admitted.no, admitted.version, state, detail))

        await asyncio.gather(*(one_dossier(items) for items in by_dossier.values()))
        await self._resend_where_the_daemon_moved_on(done)
        return done

    async def _resend_where_the_daemon_moved_on(self, done: Sequence[Replayed]) -> None:
        """A replayed version may have reached the portal after a newer one the daemon synced meanwhile
        (the ledger then refused ours): send the ledger's newest state of those dossiers again."""
        sent: dict[str, int] = {}
        for o in done:
            if o.state == "replayed" and o.dossier_no is not None:
                sent[o.dossier_no] = max(sent.get(o.dossier_no, 0), o.version or 0)
        if self._realigner is None or not sent:
            return
        newest = await self.store.ledger_records_of(list(sent))
        moved_on = [record for no, record in newest.items() if record.version > sent[no]]
        if moved_on:
            await self._realigner.send(moved_on, outcome="updated")


@contextlib.asynccontextmanager
async def open_replayer(settings: Settings, mappings: Mappings, *, changed_by: str,
                        store: StateStore | None = None, gateway: PortalGateway | None = None,
                        metrics: Metrics | None = None) -> AsyncIterator[Replayer]:
    """A replayer with its own connections, or sharing a running daemon's store and gateway (so that a
    replay from the admin API counts against the same rate limit and breaker)."""
    async with contextlib.AsyncExitStack() as stack:
        own = await open_connections(settings, stack, store=store, gateway=gateway, metrics=metrics)
        failures = FailureRecorder(own.store, None, settings.portal.retry, origin="replay")
        sync = DossierSync(settings=settings, store=own.store, gateway=own.gateway, failures=failures)
        sync.start()
        stack.push_async_callback(sync.close)
        yield Replayer(settings=settings, store=own.store, reader=EventReader(settings, mappings, own.metrics),
                       sync=sync, failures=failures, changed_by=changed_by,
                       realigner=Realigner.for_settings(own.store, own.gateway, settings))


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


def count_states(outcomes: Iterable[Replayed]) -> dict[str, int]:
    return dict(Counter(outcome.state for outcome in outcomes))
