"""The state store's engine and its rules for every table: connecting (SQLite or PostgreSQL), the database's
errors as ours (``store_errors``), and values fit for their columns (``fitted``, ``stored_utc``,
``whole_number``, the Kafka headers as a JSON column keeps them). Public helpers the ledger and the way
back both use; nothing here knows a table.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Table, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from connector.errors import PermanentError, RetryableError


class StoreUnavailable(RetryableError):
    """The state store cannot be read or written: every event would meet it, so the pipeline waits."""


class StoreRefusedValue(PermanentError):
    """The state store refused a value of the rows written (PostgreSQL's data exceptions, SQLSTATE class 22:
    a NUL in text, a number out of range; or text no driver can encode). Caused by content, not an outage: the
    record whose row it is fails, the others go on (a batch is split to find it)."""


def _sqlstate(exc: DBAPIError) -> str:
    return str(getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None) or "")


@asynccontextmanager
async def store_errors() -> AsyncIterator[None]:
    try:
        yield
    except UnicodeEncodeError:
        raise StoreRefusedValue("the state store cannot take text that is not UTF-8 (a lone surrogate)",
                                reason="store_refused_value") from None
    except (DBAPIError, OSError, TimeoutError) as exc:
        if isinstance(exc, DBAPIError) and _sqlstate(exc).startswith("22"):
            raise StoreRefusedValue(f"the state store refused a value (SQLSTATE {_sqlstate(exc)})",
                                    reason="store_refused_value") from None
        # The driver's text can quote parameters (dossier data); the class name is enough to act on.
        raise StoreUnavailable(f"state store unavailable ({type(exc).__name__})",
                               reason="state_store_unavailable") from exc


def stored_headers(headers: Sequence[tuple[str, bytes | None]]) -> list[list[str | None]]:
    """Kafka headers as the JSON column keeps them: each value as latin-1 text (any bytes survive)."""
    return [[name, None if value is None else value.decode("latin-1")] for name, value in headers]


def kafka_headers(stored: Sequence[Sequence[str | None]] | None) -> list[tuple[str, bytes | None]]:
    """``stored_headers`` undone: the bytes as they came."""
    return [(str(name), None if value is None else value.encode("latin-1")) for name, value in stored or ()]


# The longest text kept in a column that declares no length (the error message).
MAX_UNBOUNDED_TEXT = 20_000


# NUL, which PostgreSQL refuses in text, and lone surrogates, which no driver can encode.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def fitted(table: Table, row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with every text value fit for its column. Hostile input reaches these columns (a key, the
    adapter's message, a JSON path); PostgreSQL refuses NUL in text and values over the column's length,
    and a refused failure would be retried for ever. The lengths are the table's own."""
    for name, value in row.items():
        if isinstance(value, str):
            limit = getattr(table.c[name].type, "length", None) or MAX_UNBOUNDED_TEXT
            row[name] = _UNSTORABLE.sub("\ufffd", value)[:limit] if not value.isprintable() else value[:limit]
    return row


def stored_utc(moment: datetime | None) -> datetime | None:
    """A time as the store keeps it and gives it back: in UTC. SQLite keeps no zone, so a time without one
    was read back from the store and is already UTC (not this machine's local time, as ``astimezone`` would
    take it); filters compare instants."""
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# The widest values the tables' integer columns hold (ids, partitions, attempts; offsets).
MAX_INT32 = 2**31 - 1
MAX_INT64 = 2**63 - 1
_DIGITS = re.compile(r"[0-9]{1,19}")  # ASCII only: int() also takes "５", "1_0" or " 7"; isdigit() takes "²"


def whole_number(text: str, *, low: int = 0, high: int) -> int | None:
    """``text`` as a whole number from ``low`` to ``high`` (the column it is for), or None: untrusted text
    (a query, a path, a DLQ header) must fit the column, or the driver fails on it."""
    if _DIGITS.fullmatch(text) is None:
        return None
    number = int(text)
    return number if low <= number <= high else None


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL: readers do not block the writer; synchronous=NORMAL is durable across process crashes in WAL mode.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def create_engine(url: str) -> AsyncEngine:
    """The engine for ``url``, not yet connected: a SQLite file's directory made, its pragmas set on every
    connection."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine
