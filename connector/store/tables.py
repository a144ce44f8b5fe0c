"""The state store's tables. Schema migrations (Alembic) arrive with the operators' tools; until then
``StateStore.open`` creates what is missing."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

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
    UniqueConstraint("topic", "partition", "offset", name="uq_sync_failures_record"),
)
