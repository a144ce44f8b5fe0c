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
    false,
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
    # Revision 0005: rest or soap, and the SOAP call's WS-Addressing MessageID ("" without one).
    Column("transport", String(10), nullable=False, server_default="rest"),
    Column("message_id", String(100), nullable=False, server_default="", index=True),
)

# --- the way back (revision 0003) -------------------------------------------------------------------------

# Messages this service owes a topic, written in the same transaction as the decision to send them (a new
# submission revision, a payment's outcome): a relay publishes them and marks them published. The
# message id is the decision's own key, so the same decision can never be written twice; a crash between
# the broker's acknowledgement and the mark is mended at start by finding the id on the topic.
outbox = Table(
    "outbox",
    metadata,
    Column("message_id", String(200), primary_key=True),
    Column("topic", String(255), nullable=False),
    Column("record_key", LargeBinary, nullable=True),
    Column("record_value", LargeBinary, nullable=True),  # dropped once published: the topic holds it
    Column("record_headers", JSON, nullable=False),  # [[name, value as latin-1 text], ...]
    Column("value_sha256", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("published_at", DateTime(timezone=True), nullable=True),
    Column("partition", Integer, nullable=True),
    Column("offset", BigInteger, nullable=True),
    # Revision 0004: withheld while its submission revision is in conflict (the relay skips it); claimed once
    # the relay took it to send (from then on it may be on the topic, and can no longer be withheld).
    Column("held", Boolean, nullable=False, server_default=false()),
    Column("claimed_at", DateTime(timezone=True), nullable=True),
    Index("ix_outbox_published_at", "published_at"),
)

# Every submission revision met (polled or pushed by the national side): published once, acknowledged to
# the portal after the broker took it, or rejected with the field and the rule.
submissions = Table(
    "submissions",
    metadata,
    Column("dossier_no", String(100), primary_key=True),
    Column("revision", BigInteger, primary_key=True),
    Column("state", String(20), nullable=False, index=True),  # accepted / acknowledged / rejected / conflict
    Column("received_via", String(10), nullable=False),  # poll / push
    Column("agency_code", String(64), nullable=True),
    Column("submitted_at", DateTime(timezone=True), nullable=True),
    Column("message_id", String(200), nullable=True),  # its outbox message, once accepted
    Column("first_seen_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("acknowledged_at", DateTime(timezone=True), nullable=True),
    Column("reason", String(100), nullable=True),  # a rejection's
    Column("field", String(255), nullable=True),
    Column("message", Text, nullable=True),
    Column("attempts", Integer, nullable=False),
    # Revision 0004: the digest of what the citizen submitted (``submissions.content_digest``: a push and a
    # poll of the same content agree; None in rows written before), and when the portal's own record stood
    # behind it (a poll, or a settled conflict).
    Column("content_sha256", String(64), nullable=True),
    Column("confirmed_at", DateTime(timezone=True), nullable=True),
)

# --- conflicts (revision 0004) ----------------------------------------------------------------------------

# Another body met for a revision already accepted (same number and revision, another content digest). While
# one is open the revision is in state "conflict": its message, if still owed, is withheld, and it is not
# acknowledged; the lease holder asks the portal (TraCuuHoSo) and publishes what the portal holds.
submission_conflicts = Table(
    "submission_conflicts",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("dossier_no", String(100), nullable=False),
    Column("revision", BigInteger, nullable=False),
    Column("content_sha256", String(64), nullable=False),  # the conflicting body's
    Column("first_sha256", String(64), nullable=True),  # the revision's when the conflict was met
    Column("received_via", String(10), nullable=False),  # push / poll
    Column("national_json", Text, nullable=True),  # the conflicting record as received, file contents left out
    Column("detected_at", DateTime(timezone=True), nullable=False),
    Column("outcome", String(20), nullable=True),  # None while open; settled_portal / unsettled
    Column("portal_sha256", String(64), nullable=True),  # the portal's record's, once asked
    Column("note", Text, nullable=True),  # how it was settled, or why it could not be (the rule, no values)
    Column("settled_at", DateTime(timezone=True), nullable=True),
    UniqueConstraint("dossier_no", "revision", "content_sha256", name="uq_submission_conflicts_body"),
    Index("ix_submission_conflicts_outcome", "outcome"),
)

# Where each poll stands (per agency): the first day the next window starts from, before the overlap.
pull_cursors = Table(
    "pull_cursors",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("position", String(64), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Payments requested locally, watched until the Payment Platform says paid or failed, or they expire.
payments = Table(
    "payments",
    metadata,
    Column("reference", String(100), primary_key=True),  # MaThamChieu
    Column("dossier_no", String(100), nullable=False, index=True),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(8), nullable=False),
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("event_id", String(64), nullable=False),
    Column("state", String(20), nullable=False),  # pending / confirmed / failed / expired
    Column("next_query_at", DateTime(timezone=True), nullable=True),
    Column("queries", Integer, nullable=False),
    Column("last_query_result", String(100), nullable=True),
    Column("decided_at", DateTime(timezone=True), nullable=True),
    Column("decided_by", String(20), nullable=True),  # callback / query / expiry
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_payments_state_next_query_at", "state", "next_query_at"),
)

# Work only one instance may do at a time (publishing the outbox, polling the portal, querying payments):
# the holder renews its lease; another instance takes over once it has lapsed.
leases = Table(
    "leases",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)

# --- statistics (revision 0006) ---------------------------------------------------------------------------

# Per dossier, what statistics need (``stats.facts.DossierFacts``), folded from every event in version order and
# written in the same transaction as its ledger row; ``stats rebuild`` recomputes them from the topic.
dossier_facts = Table(
    "dossier_facts",
    metadata,
    Column("dossier_no", String(100), primary_key=True),
    Column("version", BigInteger, nullable=False),  # the newest event folded in
    Column("agency_code", String(64), nullable=False),
    Column("agency_name", Text, nullable=False),
    Column("procedure_code", String(64), nullable=False),
    Column("field_code", String(64), nullable=False),
    Column("channel", String(10), nullable=False),  # direct / online / postal
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("due_at", DateTime(timezone=True), nullable=True),  # the original (first seen) due time
    Column("due_from_limit", Boolean, nullable=False),
    Column("national_status", Integer, nullable=False),
    Column("terminal", String(20), nullable=True),  # processed / returned / stopped / withdrawn / refused(_at_desk)
    Column("ended_at", DateTime(timezone=True), nullable=True),
    Column("returned_at", DateTime(timezone=True), nullable=True),
    Column("supplement_requests", Integer, nullable=False),
    Column("supplement_requested_at", DateTime(timezone=True), nullable=True),
    Column("supplement_completed_at", DateTime(timezone=True), nullable=True),
    Column("second_supplement_at", DateTime(timezone=True), nullable=True),
    Column("has_fees", Boolean, nullable=False),
    Column("ever_accepted", Boolean, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_dossier_facts_received_at", "received_at"),
    Index("ix_dossier_facts_ended_at", "ended_at"),
    Index("ix_dossier_facts_agency_code", "agency_code"),
)

# Each statistics record pushed (UpdateStatistic), per agency × month: the figures sent and when, so a push
# that changes nothing is not sent again and operators see what the portal holds.
statistics_pushes = Table(
    "statistics_pushes",
    metadata,
    Column("agency_code", String(64), primary_key=True),
    Column("year", Integer, primary_key=True),
    Column("month", Integer, primary_key=True),
    Column("record_json", Text, nullable=False),  # the record as last sent (or tried)
    Column("record_sha256", String(64), nullable=False),
    Column("final", Boolean, nullable=False),  # sent after the month closed
    Column("pushed_at", DateTime(timezone=True), nullable=True),  # the last accepted push
    Column("pushes", Integer, nullable=False),  # pushes the portal accepted
    Column("state", String(20), nullable=False),  # pushed / failed (the last attempt's outcome)
    Column("last_attempt_at", DateTime(timezone=True), nullable=False),
    Column("last_error", Text, nullable=True),  # the failed attempt's error class and message
)
