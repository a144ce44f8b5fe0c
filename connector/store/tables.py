"""The state store's tables, as they stand at the newest migration (``migrations/versions``). The
migrations create them; this module is what the code reads and writes through. A test checks the two
agree."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()
_ID = BigInteger().with_variant(Integer(), "sqlite")  # SQLite numbers rows only in INTEGER keys

# Per dossier: the newest version the portal acknowledged, and a hash of the record sent.
dossier_ledger = Table(
    "dossier_ledger",
    metadata,
    Column("dossier_no", String(100), primary_key=True),
    Column("last_version", BigInteger, nullable=False),
    Column("record_hash", String(64), nullable=False),
    Column("exists_on_portal", Boolean, nullable=False),
    Column("last_event_id", String(64), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # The record last sent, exactly as hashed: backfill and reconcile re-send it. None in rows written
    # before revision 0002.
    Column("record_json", Text, nullable=True),
    Column("agency_code", String(64), nullable=True),  # the event's own (local) codes, for operators' filters
    Column("procedure_code", String(64), nullable=True),
    Column("received_at", DateTime(timezone=True), nullable=True),
    Column("last_outcome", String(32), nullable=True),  # created / updated / step
    Index("ix_dossier_ledger_received_at", "received_at"),
)

# Every event that could not be synced, kept whole so that it can be inspected and replayed. One row per
# Kafka record: a record delivered again (after a crash, before its offset was committed) that fails
# again updates its row.
sync_failures = Table(
    "sync_failures",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("topic", String(255), nullable=False),
    Column("partition", Integer, nullable=False),
    Column("offset", BigInteger, nullable=False),
    Column("dossier_no", String(100), nullable=True, index=True),  # unknown when the bytes did not decode
    Column("event_id", String(64), nullable=True),
    Column("service", String(64), nullable=True),  # the adapter service that refused, if any
    Column("record_key", LargeBinary, nullable=True),
    Column("record_value", LargeBinary, nullable=True),  # byte-identical; None when too large to keep
    Column("record_headers", JSON, nullable=False),  # [[name, value as latin-1 text], ...]
    Column("mapped_payload", JSON(none_as_null=True), nullable=True),
    Column("error_class", String(100), nullable=False),
    Column("error_kind", String(20), nullable=False),
    Column("reason", String(100), nullable=False, index=True),
    Column("field", String(255), nullable=True),
    Column("message", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("first_failed_at", DateTime(timezone=True), nullable=False),
    Column("last_failed_at", DateTime(timezone=True), nullable=False),
    Column("state", String(20), nullable=False, index=True),  # open / replayed / resolved / discarded
    Column("state_changed_by", String(100), nullable=True),
    Column("state_changed_at", DateTime(timezone=True), nullable=True),
    Column("event_version", BigInteger, nullable=True),  # unknown when the bytes did not decode
    Column("state_reason", Text, nullable=True),  # why the state last changed (a discard's reason, ...)
    UniqueConstraint("topic", "partition", "offset", name="uq_sync_failures_record"),
    Index("ix_sync_failures_last_failed_at", "last_failed_at"),
)

# Every time an event failed (in the pipeline or in a replay), for ``failures show``.
failure_attempts = Table(
    "failure_attempts",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("failure_id", Integer, ForeignKey("sync_failures.id", ondelete="CASCADE"), nullable=False,
           index=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("origin", String(20), nullable=False),  # pipeline / replay
    Column("error_class", String(100), nullable=False),
    Column("error_kind", String(20), nullable=False),
    Column("reason", String(100), nullable=False),
    Column("field", String(255), nullable=True),
    Column("message", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
)

# One row per adapter call: what was called for which dossiers, how it went. No personal data (the
# request is kept as a digest only); rows older than the retention period are deleted. One row per call,
# not per dossier: a hundred times fewer rows to write while draining a backlog.
portal_calls = Table(
    "portal_calls",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False, index=True),
    Column("service", String(64), nullable=False),
    Column("dossier_no", String(100), nullable=True, index=True),  # when the call named exactly one
    Column("dossiers", JSON, nullable=False),  # every dossier number the call named
    Column("records", Integer, nullable=False),  # records or steps in the call
    Column("request_sha256", String(64), nullable=False),
    Column("result", String(100), nullable=False),  # ok, or the error's reason
    Column("seconds", Float, nullable=False),
)
