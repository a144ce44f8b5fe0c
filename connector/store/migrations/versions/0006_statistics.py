"""Statistics: the facts of each dossier, and the statistics records pushed.

- ``dossier_facts``: per dossier, what the report and the index need (agency, procedure, field, channel, times,
  the original due time, supplements, the end state), written with the ledger row.
- ``statistics_pushes``: per agency × month, the UpdateStatistic record last sent and how often.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "dossier_facts",
        sa.Column("dossier_no", sa.String(100), primary_key=True),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("agency_code", sa.String(64), nullable=False),
        sa.Column("agency_name", sa.Text, nullable=False),
        sa.Column("procedure_code", sa.String(64), nullable=False),
        sa.Column("field_code", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(10), nullable=False),
        sa.Column("received_at", _WHEN, nullable=False),
        sa.Column("due_at", _WHEN, nullable=True),
        sa.Column("due_from_limit", sa.Boolean, nullable=False),
        sa.Column("national_status", sa.Integer, nullable=False),
        sa.Column("terminal", sa.String(20), nullable=True),
        sa.Column("ended_at", _WHEN, nullable=True),
        sa.Column("returned_at", _WHEN, nullable=True),
        sa.Column("supplement_requests", sa.Integer, nullable=False),
        sa.Column("supplement_requested_at", _WHEN, nullable=True),
        sa.Column("supplement_completed_at", _WHEN, nullable=True),
        sa.Column("second_supplement_at", _WHEN, nullable=True),
        sa.Column("has_fees", sa.Boolean, nullable=False),
        sa.Column("ever_accepted", sa.Boolean, nullable=False),
        sa.Column("updated_at", _WHEN, nullable=False),
    )
    op.create_index("ix_dossier_facts_received_at", "dossier_facts", ["received_at"])
    op.create_index("ix_dossier_facts_ended_at", "dossier_facts", ["ended_at"])
    op.create_index("ix_dossier_facts_agency_code", "dossier_facts", ["agency_code"])
    op.create_table(
        "statistics_pushes",
        sa.Column("agency_code", sa.String(64), primary_key=True),
        sa.Column("year", sa.Integer, primary_key=True),
        sa.Column("month", sa.Integer, primary_key=True),
        sa.Column("record_json", sa.Text, nullable=False),
        sa.Column("record_sha256", sa.String(64), nullable=False),
        sa.Column("final", sa.Boolean, nullable=False),
        sa.Column("pushed_at", _WHEN, nullable=True),
        sa.Column("pushes", sa.Integer, nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("last_attempt_at", _WHEN, nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("statistics_pushes")
    op.drop_index("ix_dossier_facts_agency_code", table_name="dossier_facts")
    op.drop_index("ix_dossier_facts_ended_at", table_name="dossier_facts")
    op.drop_index("ix_dossier_facts_received_at", table_name="dossier_facts")
    op.drop_table("dossier_facts")
