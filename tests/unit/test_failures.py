"""A DLQ record read back as a failure: the original's coordinates from our headers; anything else (a
record put there by something else, hostile or cut headers) kept under its own DLQ coordinates."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from connector.errors import PermanentError
from connector.failures import failure_from_dead_letter
from connector.kafka import ERROR_HEADER_PREFIX, dead_letter_headers


@dataclass
class Record:
    headers: list[tuple[str, bytes | None]]
    topic: str = "dossier.events.dlq"
    partition: int = 0
    offset: int = 7
    key: bytes | None = b"000.00.01.G12-201005-0001"
    value: bytes | None = b'{"event": 1}'
    extra: dict[str, str] = field(default_factory=dict)


def ours(**overrides: str) -> list[tuple[str, bytes | None]]:
    error = PermanentError("refused", reason="portal_rejected", field="dossier.no")
    headers = dead_letter_headers([("trace", b"t-1")], topic="dossier.events", partition=2, offset=41, error=error,
                                  attempts=3)
    named = {name[len(ERROR_HEADER_PREFIX):]: value for name, value in headers if name.startswith(ERROR_HEADER_PREFIX)}
    named.update({k: v.encode() for k, v in overrides.items()})
    return [("trace", b"t-1")] + [(ERROR_HEADER_PREFIX + k, v) for k, v in named.items()]


def test_our_headers_give_back_the_original_record_and_its_error() -> None:
    failure = failure_from_dead_letter(Record(ours()))
    assert (failure.topic, failure.partition, failure.offset) == ("dossier.events", 2, 41)
    assert (failure.error_class, failure.error_kind, failure.reason, failure.field, failure.attempts) == (
        "PermanentError", "permanent", "portal_rejected", "dossier.no", 3)
    assert failure.headers == [("trace", b"t-1")]  # the original's own, without ours
    assert (failure.key, failure.value, failure.dossier_no) == (b"000.00.01.G12-201005-0001", b'{"event": 1}',
                                                                "000.00.01.G12-201005-0001")
    assert failure.origin == "dlq"


@pytest.mark.parametrize("overrides", [
    {"offset": str(2**63)},  # beyond Kafka's offsets (and the column)
    {"partition": str(2**31)},
    {"offset": "４１"},  # digits int() would read
    {"offset": "4_1"},
    {"offset": "-1"},
    {"topic": "x" * 250},  # longer than a topic name may be
    {"topic": "dossier\x00events"},
    {"topic": ""},
    {"reason": ""},
])
def test_hostile_coordinates_keep_the_record_under_its_dlq_coordinates(overrides: dict[str, str]) -> None:
    failure = failure_from_dead_letter(Record(ours(**overrides)))
    assert (failure.topic, failure.partition, failure.offset) == ("dossier.events.dlq", 0, 7)
    assert failure.reason == "dlq_without_error_headers"


def test_a_record_without_headers_is_kept_under_its_dlq_coordinates() -> None:
    failure = failure_from_dead_letter(Record([], key=b"\xff\xfe"))
    assert (failure.topic, failure.partition, failure.offset, failure.dossier_no) == ("dossier.events.dlq", 0, 7,
                                                                                      None)


def test_unreadable_attempts_count_as_none() -> None:
    assert failure_from_dead_letter(Record(ours(attempts="many"))).attempts == 0
