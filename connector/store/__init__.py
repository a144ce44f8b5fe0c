"""The state store: what this service knows about each dossier, kept across restarts.

SQLAlchemy Core, async; a SQLite file by default, PostgreSQL by URL. The sync ledger, the failures and
their attempts, and the audit log of portal calls; the schema is kept by Alembic migrations (``schema``).
"""

from connector.store.engine import (
    MAX_INT32,
    MAX_INT64,
    StoreRefusedValue,
    StoreUnavailable,
    kafka_headers,
    stored_utc,
    whole_number,
)
from connector.store.ledger import (
    FAILURE_STATES,
    Failure,
    FailureFilter,
    LedgerEntry,
    LedgerFilter,
    LedgerRecord,
    StateStore,
    Synced,
    failure_row,
)

__all__ = ["FAILURE_STATES", "MAX_INT32", "MAX_INT64", "Failure", "FailureFilter", "LedgerEntry", "LedgerFilter",
           "LedgerRecord", "StateStore", "StoreRefusedValue", "StoreUnavailable", "Synced", "failure_row",
           "kafka_headers", "stored_utc", "whole_number"]
