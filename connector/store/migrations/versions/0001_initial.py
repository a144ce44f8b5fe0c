"""The schema before migrations: the sync ledger and the failures.

Databases created before the state store had migrations hold exactly this; they are stamped at this
revision, not created again.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dossier_ledger",
        sa.Column("dossier_no", sa.String(100), primary_key=True),
        sa.Column("last_version", sa.BigInteger, nullable=False),
        sa.Column("record_hash", sa.String(64), nullable=False),
        sa.Column("exists_on_portal", sa.Boolean, nullable=False),
        sa.Column("last_event_id", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "sync_failures",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("topic", sa.String(255), nullable=False),
        sa.Column("partition", sa.Integer, nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
        sa.Column("dossier_no", sa.String(100), nullable=True),
        sa.Column("event_id", sa.String(64), nullable=True),
        sa.Column("service", sa.String(64), nullable=True),
        sa.Column("record_key", sa.LargeBinary, nullable=True),
        sa.Column("record_value", sa.LargeBinary, nullable=True),
        sa.Column("record_headers", sa.JSON, nullable=False),
        sa.Column("mapped_payload", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("error_class", sa.String(100), nullable=False),
        sa.Column("error_kind", sa.String(20), nullable=False),
        sa.Column("reason", sa.String(100), nullable=False),
        sa.Column("field", sa.String(255), nullable=True),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("first_failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("state_changed_by", sa.String(100), nullable=True),
        sa.Column("state_changed_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("topic", "partition", "offset", name="uq_sync_failures_record"),
    )
    op.create_index("ix_sync_failures_dossier_no", "sync_failures", ["dossier_no"])
    op.create_index("ix_sync_failures_reason", "sync_failures", ["reason"])
    op.create_index("ix_sync_failures_state", "sync_failures", ["state"])


def downgrade() -> None:
    op.drop_table("sync_failures")
    op.drop_table("dossier_ledger")
