"""refresh intent: the secret version whose refresh token was sent to the provider

Written before a refresh request leaves (intent before the external effect) and
cleared with its recorded outcome, so a refresh whose process died after sending
is known as one whose answer was lost (a rotating provider may have consumed the
token), not mistaken for a token the provider revoked.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 10:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("connected_accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("refresh_sent_version", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("connected_accounts", schema=None) as batch_op:
        batch_op.drop_column("refresh_sent_version")
