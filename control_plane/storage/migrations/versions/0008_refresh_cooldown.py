"""refresh cooldown: a connected account's refresh is blocked until a time after a transient failure

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28 19:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import control_plane.storage.types

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("connected_accounts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "refresh_blocked_until",
                control_plane.storage.types.UTCDateTime(timezone=True),
                nullable=True,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("connected_accounts", schema=None) as batch_op:
        batch_op.drop_column("refresh_blocked_until")
