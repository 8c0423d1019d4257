"""the ledger's index walks a digest's queued rows in reader order

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 05:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A claim takes the next queued readers by id: with the id in the index it reads them in
    # order and stops, instead of stepping over every row already sent (quadratic in the list).
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.drop_index("ix_delivery_digest_status")
        batch_op.create_index(
            "ix_delivery_digest_status", ["digest_id", "status", "subscriber_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.drop_index("ix_delivery_digest_status")
        batch_op.create_index("ix_delivery_digest_status", ["digest_id", "status"], unique=False)
