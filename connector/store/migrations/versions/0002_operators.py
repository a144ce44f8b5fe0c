"""Operators' tools: what replay, backfill and reconcile need, every attempt of a failure, and an audit
log of portal calls.

- ``dossier_ledger``: the record last sent (as sent), its agency, procedure and reception time (backfill
  filters on them), and the unit's outcome.
- ``sync_failures``: the event's version (replay's version check) and why its state last changed.
- ``failure_attempts``: one row per time an event failed, for ``failures show``.
- ``portal_calls``: one row per adapter call, no personal data, pruned after a retention period.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite numbers rows only in INTEGER keys


def upgrade() -> None:
    with op.batch_alter_table("dossier_ledger") as ledger:
        ledger.add_column(sa.Column("record_json", sa.Text, nullable=True))
        ledger.add_column(sa.Column("agency_code", sa.String(64), nullable=True))
        ledger.add_column(sa.Column("procedure_code", sa.String(64), nullable=True))
        ledger.add_column(sa.Column("received_at", sa.DateTime(timezone=True), nullable=True))
        ledger.add_column(sa.Column("last_outcome", sa.String(32), nullable=True))
        ledger.create_index("ix_dossier_ledger_received_at", ["received_at"])
    with op.batch_alter_table("sync_failures") as failures:
        failures.add_column(sa.Column("event_version", sa.BigInteger, nullable=True))
        failures.add_column(sa.Column("state_reason", sa.Text, nullable=True))
        failures.create_index("ix_sync_failures_last_failed_at", ["last_failed_at"])
    op.create_table(
        "failure_attempts",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("failure_id", sa.Integer, sa.ForeignKey("sync_failures.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("origin", sa.String(20), nullable=False),
        sa.Column("error_class", sa.String(100), nullable=False),
        sa.Column("error_kind", sa.String(20), nullable=False),
        sa.Column("reason", sa.String(100), nullable=False),
        sa.Column("field", sa.String(255), nullable=True),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
    )
    op.create_table(
        "portal_calls",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("service", sa.String(64), nullable=False),
        sa.Column("dossier_no", sa.String(100), nullable=True, index=True),
        sa.Column("dossiers", sa.JSON, nullable=False),
        sa.Column("records", sa.Integer, nullable=False),
        sa.Column("request_sha256", sa.String(64), nullable=False),
        sa.Column("result", sa.String(100), nullable=False),
        sa.Column("seconds", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("portal_calls")
    op.drop_table("failure_attempts")
    with op.batch_alter_table("sync_failures") as failures:
        failures.drop_index("ix_sync_failures_last_failed_at")
        failures.drop_column("state_reason")
        failures.drop_column("event_version")
    with op.batch_alter_table("dossier_ledger") as ledger:
        ledger.drop_index("ix_dossier_ledger_received_at")
        for column in ("last_outcome", "received_at", "procedure_code", "agency_code", "record_json"):
            ledger.drop_column(column)
