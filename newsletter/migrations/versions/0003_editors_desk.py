"""the editor's desk: dropped briefings, the note, approvals

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 22:15:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("digest", schema=None) as batch_op:
        batch_op.add_column(sa.Column("note", sa.String(), nullable=False, server_default=""))
    op.create_table(
        "digest_drop",
        sa.Column("list_id", sa.Integer(), nullable=False),
        sa.Column("briefing_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["briefing_id"], ["briefing.id"]),
        sa.ForeignKeyConstraint(["list_id"], ["mailing_list.id"]),
        sa.PrimaryKeyConstraint("list_id", "briefing_id"),
    )
    op.create_table(
        "digest_note",
        sa.Column("list_id", sa.Integer(), nullable=False),
        sa.Column("text", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["list_id"], ["mailing_list.id"]),
        sa.PrimaryKeyConstraint("list_id"),
    )
    op.create_table(
        "digest_approval",
        sa.Column("list_id", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(), nullable=False),
        sa.Column("approved_at", sa.DateTime(), nullable=False),
        sa.Column("approved_by", sa.String(), nullable=False),
        sa.ForeignKeyConstraint(["list_id"], ["mailing_list.id"]),
        sa.PrimaryKeyConstraint("list_id"),
    )


def downgrade() -> None:
    op.drop_table("digest_approval")
    op.drop_table("digest_note")
    op.drop_table("digest_drop")
    with op.batch_alter_table("digest", schema=None) as batch_op:
        batch_op.drop_column("note")
