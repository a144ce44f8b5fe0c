"""Reading one Kafka record into an event ready to sync, or the reason it cannot be synced."""

import gc
import json
import types
import weakref
from dataclasses import dataclass, field

from aiokafka import TopicPartition

from connector.config import load_settings
from connector.dev.samples import generate_events
from connector.observability import Metrics
from connector.push.mapping import load_mappings
from connector.push.sync import EventReader, PendingEvent, Rejected

SETTINGS = load_settings(None)
TP = TopicPartition("dossier.events", 0)


@dataclass(eq=False)
class Record:
    key: bytes | None
    value: bytes | None
    topic: str = "dossier.events"
    partition: int = 0
    offset: int = 0
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)


def reader() -> EventReader:
    return EventReader(SETTINGS, load_mappings(SETTINGS.mappings.dir), Metrics())


def valid_document() -> dict:
    message = next(m for m in generate_events(dossiers=5, seed=2) if m.label == "valid")
    return json.loads(message.value)


def test_a_valid_event_is_admitted_mapped() -> None:
    document = valid_document()
    read = reader().read(TP, Record(document["dossier"]["no"].encode(), json.dumps(document).encode()))
    assert isinstance(read, PendingEvent)
    assert read.no == document["dossier"]["no"] and read.version == document["dossier"]["version"]
    assert read.mapped.record["MaHoSo"] == document["dossier"]["no"]


def test_a_rejected_event_names_the_rule_and_keeps_no_reference_cycle() -> None:
    # An error keeps its traceback, the traceback the reading frame, the frame the error: a cycle that
    # would hold the event and its bytes until a full collection. The reader drops the traceback.
    document = valid_document()
    # From the national portal, without our own number to send its status back with.
    document["dossier"].update(origin="portal", local_no=None, receipt_no=None)
    record = Record(document["dossier"]["no"].encode(), json.dumps(document).encode())
    freed = weakref.ref(record)
    gc.disable()
    try:
        read = reader().read(TP, record)
        assert isinstance(read, Rejected)
        assert (read.error.reason, read.error.field) == ("local_no_missing", "dossier.local_no")
        assert read.error.__traceback__ is None
        del read, record
        assert freed() is None
    finally:
        gc.enable()


def test_a_bug_while_reading_becomes_a_failure_that_says_where_not_what() -> None:
    broken = types.SimpleNamespace(procedures=None)  # map_dossier meets None where it expects a table
    document = valid_document()
    read = EventReader(SETTINGS, broken, Metrics()).read(
        TP, Record(document["dossier"]["no"].encode(), json.dumps(document).encode()))
    assert isinstance(read, Rejected)
    assert read.error.reason == "internal_error" and read.error.error_class == "AttributeError"
    assert "AttributeError" in str(read.error) and "map_dossier (mapping.py:" in str(read.error)
    assert document["dossier"]["no"] not in str(read.error)
    assert read.error.__cause__ is not None and read.error.__cause__.__traceback__ is None
