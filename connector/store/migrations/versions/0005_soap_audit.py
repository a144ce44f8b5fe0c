"""The audit trail names the transport of each call and, over SOAP, its WS-Addressing MessageID, so the
integration platform's message log can be joined with ours.

- ``portal_calls.transport``: "rest" or "soap" (rows written before: "rest").
- ``portal_calls.message_id``: the call's MessageID (``urn:uuid:…``), empty when the transport sends none.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("portal_calls", sa.Column("transport", sa.String(10), nullable=False, server_default="rest"))
    op.add_column("portal_calls", sa.Column("message_id", sa.String(100), nullable=False, server_default=""))
    op.create_index("ix_portal_calls_message_id", "portal_calls", ["message_id"])


def downgrade() -> None:
    op.drop_index("ix_portal_calls_message_id", table_name="portal_calls")
    with op.batch_alter_table("portal_calls") as calls:
        calls.drop_column("message_id")
        calls.drop_column("transport")
