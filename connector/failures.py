"""Events that cannot be synced: each is recorded in the state store's failure table (for inspection and
replay) and sent to the DLQ topic byte-identical with error headers. Both are acknowledged before the
event counts as finished, so its offset may be committed; a poison event never stalls its partition."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import Any, Protocol

import structlog
from aiokafka.errors import MessageSizeTooLargeError

from connector.batching import MicroBatcher
from connector.config import RetrySettings
from connector.errors import DeadlineExceeded, SyncError
from connector.kafka import ERROR_HEADER_PREFIX, DeadLetterQueue, Header, dead_letter_headers
from connector.retry import call_with_retries
from connector.store import MAX_INT32, MAX_INT64, Failure, StateStore, whole_number
from connector.untrusted import text_problem

log = structlog.get_logger(__name__)


class ConsumedRecord(Protocol):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes | None]]


def _dossier_no_from_key(key: bytes | None) -> str | None:
    """The key is the dossier number by contract; an event that did not decode still names it there."""
    try:
        text = key.decode("utf-8") if key else None
    except UnicodeDecodeError:
        return None
    return text if text and len(text) <= 100 and text_problem(text) is None else None


_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")  # what Kafka allows in a topic name


def _original(ours: dict[str, str]) -> tuple[str, int, int, str, str, str] | None:
    """From our error headers: the original's topic, partition and offset, and the error's class, kind and
    reason; None unless every one is there and fits."""
    topic = ours.get("topic", "")
    partition = whole_number(ours.get("partition", ""), high=MAX_INT32)
    offset = whole_number(ours.get("offset", ""), high=MAX_INT64)
    error_class, kind, reason = ours.get("exception.class.name"), ours.get("kind"), ours.get("reason")
    if _TOPIC.fullmatch(topic) is None or partition is None or offset is None or not (error_class and kind
                                                                                       and reason):
        return None
    return topic, partition, offset, error_class, kind, reason


def failure_from_dead_letter(record: ConsumedRecord) -> Failure:
    """A DLQ record as the failure table keeps it: the original's coordinates, key, value and headers, and
    the error, all from the record and its error headers. A record without our headers (put there by
    something else, or cut short) is kept under its own DLQ coordinates, so it is still reachable."""
    ours = {name[len(ERROR_HEADER_PREFIX):]: (value or b"").decode("utf-8", errors="replace")
            for name, value in record.headers if name.startswith(ERROR_HEADER_PREFIX)}
    found = _original(ours)
    if found is None:
        found = (record.topic, record.partition, record.offset, "UnknownError", "invalid_input",
                 "dlq_without_error_headers")
        ours = {"exception.message": "on the DLQ without usable error headers naming the original record; "
                                     "kept under its DLQ coordinates"}
    topic, partition, offset, error_class, kind, reason = found
    return Failure(
        topic=topic, partition=partition, offset=offset, key=record.key, value=record.value,
        headers=[(name, value) for name, value in record.headers if not name.startswith(ERROR_HEADER_PREFIX)],
        dossier_no=_dossier_no_from_key(record.key), event_id=None, service=None, mapped_payload=None,
        error_class=error_class, error_kind=kind, reason=reason, field=ours.get("field") or None,
        message=ours.get("exception.message", ""),
        attempts=whole_number(ours.get("attempts", ""), high=MAX_INT32) or 0, origin="dlq")


class FailureRecorder:
    """``dead_letters`` None: the failure table only, for a replay, whose events are on the DLQ already."""

    def __init__(self, store: StateStore, dead_letters: DeadLetterQueue | None, retry: RetrySettings, *,
                 origin: str = "pipeline") -> None:
        self._store = store
        self._dlq = dead_letters
        self._retry = retry
        self._origin = origin
        # Many failures at once (a bad mapping refuses a whole batch) share one transaction.
        self._writes: MicroBatcher[Failure, None] = MicroBatcher(
            self._write, max_weight=200, max_bytes=16 << 20, linger_seconds=0.002, max_concurrent_batches=1,
            size_of=lambda f: len(f.value or b""))

    def start(self) -> None:
        self._writes.start()

    async def close(self) -> None:
        await self._writes.close()

    async def _write(self, failures: list[Failure]) -> list[None]:
        # The store being down is service-wide: wait it out, never lose the failure.
        await call_with_retries(lambda: self._store.record_failures(failures), service="state_store",
                                policy=self._retry)
        return [None] * len(failures)

    async def _dead_letter(self, key: bytes | None, value: bytes | None, headers: list[Header]) -> None:
        assert self._dlq is not None
        try:
            await self._dlq.send(key, value, headers)
        except MessageSizeTooLargeError:
            # The original and our headers are over what the DLQ topic takes: the record's content, not an
            # outage. Sent without the value; the headers and the failure row say where the original lies.
            size = str(len(value or b"")).encode()
            await self._dlq.send(key, None, [*headers, (ERROR_HEADER_PREFIX + "original.size", size)])

    async def record(
        self,
        record: ConsumedRecord,
        error: SyncError,
        *,
        dossier_no: str | None = None,
        event_id: str | None = None,
        event_version: int | None = None,
        service: str | None = None,
        mapped_payload: dict[str, Any] | None = None,
    ) -> None:
        """Returns once the failure is in the store and on the DLQ."""
        value = record.value
        headers = dead_letter_headers(
            record.headers, topic=record.topic, partition=record.partition, offset=record.offset,
            error=error, attempts=error.attempts,
        )
        if error.reason == "too_large":
            # It may not fit in a produce request or a row; the headers say where the original lies.
            headers.append((ERROR_HEADER_PREFIX + "original.size", str(len(value or b"")).encode()))
            value = None
        failure = Failure(
            topic=record.topic, partition=record.partition, offset=record.offset, key=record.key, value=value,
            headers=list(record.headers), dossier_no=dossier_no or _dossier_no_from_key(record.key),
            event_id=event_id, service=service, mapped_payload=mapped_payload,
            error_class=error.error_class, error_kind=error.kind, reason=error.reason, field=error.field,
            message=str(error), attempts=error.attempts, event_version=event_version, origin=self._origin,
        )
        if self._dlq is None:
            await self._writes.submit(failure)
        else:
            await asyncio.gather(self._writes.submit(failure), self._dead_letter(record.key, value, headers))
        log.warning(
            "event failed",
            topic=record.topic, partition=record.partition, offset=record.offset,
            kind=error.kind, reason=error.reason, field=error.field, service=service,
            last_error=error.last.reason if isinstance(error, DeadlineExceeded) else None,
            # The far side's own text may quote a citizen's data: it goes to the store and DLQ headers only.
            error=None if error.quotes_remote_text else error.message,
            error_code=getattr(error, "error_code", None),
            attempts=error.attempts, dlq=self._dlq.topic if self._dlq is not None else None, origin=self._origin,
        )
