"""Statistics test support: events folded into dossier facts the way the daemon folds them (read, validate, map,
fold in version order), written into a real state store; and the ``stats`` commands run as an operator runs them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition

from connector.config import Settings
from connector.observability import Metrics
from connector.push.mapping import Mappings, load_mappings
from connector.push.sync import EventReader, PendingEvent
from connector.stats.facts import DossierFacts, facts_row, fold
from connector.store import StateStore
from tests.factories import ConsumedRecord, encode

TOPIC = TopicPartition("dossier.events", 0)


def folded_facts(events: Iterable[dict[str, Any]], *, mappings: Mappings | None = None) -> dict[str, DossierFacts]:
    """Every dossier's facts after its events (any order across dossiers; each dossier's in version order)."""
    mappings = mappings or load_mappings(Settings().mappings.dir)
    reader = EventReader(Settings(), mappings, Metrics())
    found: dict[str, DossierFacts] = {}
    for offset, event in enumerate(events):
        key, value = encode(event)
        read = reader.read(TOPIC, ConsumedRecord(TOPIC.topic, TOPIC.partition, offset, key, value))
        if not isinstance(read, PendingEvent):
            raise AssertionError(f"event {offset} of {read.event.dossier.no if read.event else '?'} refused: "
                                 f"{read.error.field}: {read.error}")
        found[read.no] = fold(found.get(read.no), read.no, read.facts)
    return found


async def store_facts(store: StateStore, facts: Iterable[DossierFacts]) -> None:
    rows = [facts_row(f) for f in facts]
    for start in range(0, len(rows), 500):
        await store.record_facts(rows[start:start + 500])


def stats_config(scratch: Path, state_url: str, **sections: Any) -> Path:
    """A settings file for the ``stats`` commands."""
    path = scratch / "stats-config.yaml"
    path.write_text(json.dumps({"state": {"url": state_url}, **sections}), encoding="utf-8")
    return path


def figures(row: dict[str, Any], names: Sequence[str]) -> dict[str, Any]:
    return {name: row[name] for name in names}
