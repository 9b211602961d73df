"""tool confirmations: calls held for a human's decision, and who may approve them

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 13:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import control_plane.storage.types
from control_plane.storage.sqlite_guard import drop_statements, guard_statements

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

APP_ROLE = "agentauth_app"
TABLE = "tool_confirmations"


def upgrade() -> None:
    # Plain ADD COLUMN (no batch rebuild, which would drop SQLite's guard triggers);
    # NULL on the existing rules: the principal approves, as before there were names.
    op.add_column("tool_policy_rules", sa.Column("approver_ids", sa.JSON(), nullable=True))
    op.add_column("tool_policy_rules", sa.Column("approver_groups", sa.JSON(), nullable=True))
    op.create_table(
        TABLE,
        sa.Column("org_id", sa.String(length=32), nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("action_id", sa.String(length=32), nullable=False),
        sa.Column("principal", sa.String(length=128), nullable=False),
        sa.Column("actor", sa.String(length=256), nullable=False),
        sa.Column("tool", sa.String(length=128), nullable=False),
        sa.Column("arguments_hash", sa.String(length=64), nullable=False),
        sa.Column("summary", sa.String(length=512), nullable=False),
        sa.Column("rule_ids", sa.JSON(), nullable=False),
        sa.Column("approvers", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("approver_id", sa.String(length=32), nullable=True),
        sa.Column("reason", sa.String(length=1000), nullable=True),
        sa.Column(
            "create_time", control_plane.storage.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "expire_time", control_plane.storage.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "decide_time", control_plane.storage.types.UTCDateTime(timezone=True), nullable=True
        ),
        sa.ForeignKeyConstraint(
            ["org_id", "action_id"],
            ["tool_actions.org_id", "tool_actions.id"],
            name=op.f("fk_tool_confirmations_org_id_tool_actions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_tool_confirmations_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("org_id", "id", name=op.f("pk_tool_confirmations")),
        sa.UniqueConstraint(
            "org_id", "action_id", name=op.f("uq_tool_confirmations_org_id_action_id")
        ),
    )
    with op.batch_alter_table(TABLE, schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_tool_confirmations_org_id_create_time"),
            ["org_id", "create_time"],
            unique=False,
        )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {TABLE} TO {APP_ROLE}")
        op.execute(f"ALTER TABLE {TABLE} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {TABLE} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY org_isolation ON {TABLE} "
            "USING (org_id = current_setting('app.org_id', true)) "
            "WITH CHECK (org_id = current_setting('app.org_id', true))"
        )
    else:  # SQLite's second wall (migration 0009)
        for statement in guard_statements(TABLE):
            op.execute(statement)


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name != "postgresql"
    if sqlite:
        for statement in drop_statements(TABLE):
            op.execute(statement)
    with op.batch_alter_table(TABLE, schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tool_confirmations_org_id_create_time"))
    op.drop_table(TABLE)  # drops its row-level-security policy with it
    with op.batch_alter_table("tool_policy_rules", schema=None) as batch_op:
        batch_op.drop_column("approver_groups")
        batch_op.drop_column("approver_ids")
    if sqlite:
        # SQLite's batch mode rebuilt tool_policy_rules, and its guard triggers went with it.
        for statement in guard_statements("tool_policy_rules"):
            op.execute(statement)
