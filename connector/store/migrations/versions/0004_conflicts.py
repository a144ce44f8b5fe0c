"""Two bodies for one submission revision: kept, withheld, and settled by asking the portal.

- ``submissions.content_sha256``: the digest of the revision's content as accepted (what the citizen
  submitted, whatever carried it: a push and a poll of the same submission agree); ``confirmed_at``: when
  the portal's own record stood behind it (a poll, or a conflict it settled).
- ``submission_conflicts``: every other body met for an accepted revision, with its digest and the
  record as received (file contents left out), until the portal's record settles it.
- ``outbox.held``: a message withheld while its revision is in conflict; ``claimed_at``: when the relay took
  it to send (from then on it can no longer be withheld).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite numbers rows only in INTEGER keys


def upgrade() -> None:
    op.add_column("submissions", sa.Column("content_sha256", sa.String(64), nullable=True))
    op.add_column("submissions", sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("outbox", sa.Column("held", sa.Boolean, nullable=False, server_default=sa.false()))
    op.add_column("outbox", sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "submission_conflicts",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("dossier_no", sa.String(100), nullable=False),
        sa.Column("revision", sa.BigInteger, nullable=False),
        sa.Column("content_sha256", sa.String(64), nullable=False),
        sa.Column("first_sha256", sa.String(64), nullable=True),
        sa.Column("received_via", sa.String(10), nullable=False),
        sa.Column("national_json", sa.Text, nullable=True),
        sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(20), nullable=True),
        sa.Column("portal_sha256", sa.String(64), nullable=True),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("dossier_no", "revision", "content_sha256", name="uq_submission_conflicts_body"),
        sa.Index("ix_submission_conflicts_outcome", "outcome"),
    )


def downgrade() -> None:
    op.drop_table("submission_conflicts")
    with op.batch_alter_table("outbox") as outbox:
        outbox.drop_column("claimed_at")
        outbox.drop_column("held")
    with op.batch_alter_table("submissions") as submissions:
        submissions.drop_column("confirmed_at")
        submissions.drop_column("content_sha256")
