"""The operators' values as both of their interfaces give them, the admin API's replies and the commands'
``--json`` alike, and the times operators type. Pure: no I/O, no rendering.

A failure's identifier is ``id`` in the failure itself (a listing's row, one failure shown, a discard's
reply); anything else that names a failure calls it ``failure_id`` (an attempt, a replay's item)."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from connector.store import stored_utc


def as_utc(moment: datetime) -> datetime:
    """A time an operator gave, in UTC; without an offset it is this machine's local time. ValueError when it
    falls outside the years 1-9999 once in UTC (9999-12-31T23:59-23:59)."""
    try:
        return moment.astimezone(UTC)  # astimezone reads a naive time as local time
    except OverflowError:
        raise ValueError("must be a time within the years 1-9999 once in UTC") from None


def parse_moment(text: str) -> datetime:
    """An ISO 8601 date or date-time typed by an operator, in UTC (see ``as_utc``)."""
    return as_utc(datetime.fromisoformat(text))


def failure_summary(row: Mapping[str, Any]) -> dict[str, Any]:
    """A failure row for a listing: without the event's bytes and the mapped payload (``show`` has them)."""
    return {k: v for k, v in row.items() if k not in ("record_key", "record_value", "mapped_payload")}


def failure_page(rows: Sequence[Mapping[str, Any]], *, total: int, limit: int) -> dict[str, Any]:
    """One page of a failure listing: ``next_after_id`` is the last id of a full page (page on with it as
    ``after_id``), None after a shorter one."""
    return {"total": total, "failures": [failure_summary(r) for r in rows],
            "next_after_id": rows[-1]["id"] if rows and len(rows) == limit else None}


def plain(value: Any) -> Any:
    """A stored value as JSON: times in ISO 8601 UTC, bytes as text when they are UTF-8 (else base64)."""
    if isinstance(value, datetime):
        moment = stored_utc(value)
        return moment.isoformat() if moment is not None else None
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return {"base64": base64.b64encode(raw).decode("ascii")}
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value
