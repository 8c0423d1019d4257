"""story images and "why it matters" on briefings

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Server defaults: the briefings stored before this have no image and no such line.
    with op.batch_alter_table("briefing", schema=None) as batch_op:
        batch_op.add_column(sa.Column("image_url", sa.String(), nullable=False, server_default=""))
        batch_op.add_column(
            sa.Column("image_width", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("image_height", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("image_alt", sa.String(), nullable=False, server_default=""))
        batch_op.add_column(
            sa.Column("why_it_matters", sa.String(), nullable=False, server_default="")
        )


def downgrade() -> None:
    with op.batch_alter_table("briefing", schema=None) as batch_op:
        batch_op.drop_column("why_it_matters")
        batch_op.drop_column("image_alt")
        batch_op.drop_column("image_height")
        batch_op.drop_column("image_width")
        batch_op.drop_column("image_url")
