"""``stats rebuild``: the dossiers' facts recomputed by reading the dossier topic again from a moment on.

The topic is read outside the daemon's consumer group (nothing is committed; the daemon's offsets are not
touched), from the offsets the broker gives for ``since`` (``offsets_for_times``), as far as the topic's retention
reaches. Each event is read exactly as the daemon reads it (decode, validate, map) and folded in version order.
A dossier whose first event read is its version 1 is rebuilt from scratch (its whole history is on the topic).
One whose history began earlier continues from its stored facts (the fold passes over the versions they already
hold); without stored facts it is rebuilt from what the topic still has, and counted as partial: its supplement
requests and original due date before the first event read are not known.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiokafka import TopicPartition

from connector.config import Settings
from connector.kafka import read_topic
from connector.observability import Metrics
from connector.push.mapping import Mappings
from connector.push.sync import EventReader, PendingEvent
from connector.stats.facts import DossierFacts, facts_from_row, facts_row, fold
from connector.store import StateStore

WRITE_BATCH = 500


@dataclass
class RebuildReport:
    since: datetime
    events: int = 0  # records read at or after ``since``
    unreadable: int = 0  # records the daemon would dead-letter too (not counted in any fact)
    dossiers: int = 0
    continued: int = 0  # history began before the window: folded on from their stored facts
    partial: int = 0  # history began before the window, no stored facts: rebuilt from what the topic has
    oldest_read: datetime | None = None  # the oldest event read: how far the topic's retention reached
    by_reason: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, object]:
        return {"since": self.since.isoformat(), "events": self.events, "unreadable": self.unreadable,
                "dossiers": self.dossiers, "continued": self.continued, "partial": self.partial,
                "oldest_read": self.oldest_read.isoformat() if self.oldest_read else None,
                "unreadable_by_reason": self.by_reason}


async def rebuild_facts(settings: Settings, mappings: Mappings, store: StateStore, *, since: datetime,
                        on_progress: Callable[[int], None] = lambda _n: None) -> RebuildReport:
    reader = EventReader(settings, mappings, Metrics())
    report = RebuildReport(since)
    folded: dict[str, DossierFacts | None] = {}
    first_version: dict[str, int] = {}
    events: dict[str, list[PendingEvent]] = {}
    since_ms = int(since.timestamp() * 1000)
    async for batch in read_topic(settings.kafka, settings.kafka.topics.dossier_events, since_ms=since_ms,
                                  seek_to_time=True):
        for record in batch:
            report.events += 1
            moment = datetime.fromtimestamp(record.timestamp / 1000, UTC)
            if report.oldest_read is None or moment < report.oldest_read:
                report.oldest_read = moment
            read = reader.read(TopicPartition(record.topic, record.partition), record)
            if not isinstance(read, PendingEvent):
                report.unreadable += 1
                report.by_reason[read.error.reason] = report.by_reason.get(read.error.reason, 0) + 1
                continue
            first_version.setdefault(read.no, read.version)
            events.setdefault(read.no, []).append(read)
        on_progress(report.events)
        # Bounded memory: fold what has arrived, keep only the folded facts per dossier.
        await _fold_arrived(store, events, folded, first_version, report)
    await _fold_arrived(store, events, folded, first_version, report)
    rows = [facts_row(f) for f in folded.values() if f is not None]
    for start in range(0, len(rows), WRITE_BATCH):
        await store.record_facts(rows[start:start + WRITE_BATCH])
    report.dossiers = len(rows)
    return report


async def _fold_arrived(store: StateStore, events: dict[str, list[PendingEvent]],
                        folded: dict[str, DossierFacts | None], first_version: dict[str, int],
                        report: RebuildReport) -> None:
    new = [no for no in events if no not in folded]
    if new:
        stored = await store.facts_of(new)
        for no in new:
            row = stored.get(no)
            start = facts_from_row(row) if row is not None else None
            if first_version[no] == 1:
                folded[no] = None
            elif start is not None:
                report.continued += 1
                folded[no] = start
            else:
                report.partial += 1
                folded[no] = None
    for no, items in events.items():
        facts = folded[no]
        for item in sorted(items, key=lambda i: i.version):
            facts = fold(facts, no, item.facts)
        folded[no] = facts
    events.clear()
