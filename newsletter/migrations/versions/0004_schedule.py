"""scheduled sending: each list's slots claimed by `newsletter run`

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "scheduled_run",
        sa.Column("list_id", sa.Integer(), nullable=False),
        sa.Column("slot_at", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("outcome", sa.String(), nullable=False),
        sa.Column("digest_id", sa.Integer(), nullable=True),
        sa.Column("sent", sa.Integer(), nullable=False),
        sa.Column("detail", sa.String(), nullable=False),
        sa.ForeignKeyConstraint(["digest_id"], ["digest.id"]),
        sa.ForeignKeyConstraint(["list_id"], ["mailing_list.id"]),
        sa.PrimaryKeyConstraint("list_id", "slot_at"),
    )


def downgrade() -> None:
    op.drop_table("scheduled_run")
