"""The way back: citizen submissions and payment outcomes, published exactly once.

- ``outbox``: messages owed to a topic, written with the decision to send them, marked once published.
- ``submissions``: every submission revision met, its state, a rejection's field and rule.
- ``pull_cursors``: where each poll of the national portal stands.
- ``payments``: payments requested locally, watched until an outcome or expiry.
- ``leases``: work only one instance does at a time (the outbox relay, the polls).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("message_id", sa.String(200), primary_key=True),
        sa.Column("topic", sa.String(255), nullable=False),
        sa.Column("record_key", sa.LargeBinary, nullable=True),
        sa.Column("record_value", sa.LargeBinary, nullable=True),
        sa.Column("record_headers", sa.JSON, nullable=False),
        sa.Column("value_sha256", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("partition", sa.Integer, nullable=True),
        sa.Column("offset", sa.BigInteger, nullable=True),
        sa.Index("ix_outbox_published_at", "published_at"),
    )
    op.create_table(
        "submissions",
        sa.Column("dossier_no", sa.String(100), primary_key=True),
        sa.Column("revision", sa.BigInteger, primary_key=True),
        sa.Column("state", sa.String(20), nullable=False, index=True),
        sa.Column("received_via", sa.String(10), nullable=False),
        sa.Column("agency_code", sa.String(64), nullable=True),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("message_id", sa.String(200), nullable=True),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.String(100), nullable=True),
        sa.Column("field", sa.String(255), nullable=True),
        sa.Column("message", sa.Text, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
    )
    op.create_table(
        "pull_cursors",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("position", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "payments",
        sa.Column("reference", sa.String(100), primary_key=True),
        sa.Column("dossier_no", sa.String(100), nullable=False, index=True),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.String(8), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("next_query_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("queries", sa.Integer, nullable=False),
        sa.Column("last_query_result", sa.String(100), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(20), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Index("ix_payments_state_next_query_at", "state", "next_query_at"),
    )
    op.create_table(
        "leases",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    for table in ("leases", "payments", "pull_cursors", "submissions", "outbox"):
        op.drop_table(table)
