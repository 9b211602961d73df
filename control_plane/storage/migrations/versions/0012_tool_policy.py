"""tool policy: each org's tool policy rules, and the groups its users are in

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 12:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import control_plane.storage.types
from control_plane.storage.sqlite_guard import drop_statements, guard_statements

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

APP_ROLE = "agentauth_app"
TENANT = ("tool_policy_rules",)


def _postgres_grants_and_row_level_security() -> None:
    for table in TENANT:
        op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {APP_ROLE}")
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY org_isolation ON {table} "
            "USING (org_id = current_setting('app.org_id', true)) "
            "WITH CHECK (org_id = current_setting('app.org_id', true))"
        )


def upgrade() -> None:
    op.create_table(
        "tool_policy_rules",
        sa.Column("org_id", sa.String(length=32), nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tool", sa.String(length=160), nullable=False),
        sa.Column("agent_ids", sa.JSON(), nullable=True),
        sa.Column("groups", sa.JSON(), nullable=True),
        sa.Column("constraints", sa.JSON(), nullable=False),
        sa.Column("confirm", sa.Boolean(), nullable=False),
        sa.Column("description", sa.String(length=2000), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("request_fingerprint", sa.String(length=64), nullable=True),
        sa.Column(
            "create_time", control_plane.storage.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_tool_policy_rules_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("org_id", "id", name=op.f("pk_tool_policy_rules")),
        sa.UniqueConstraint(
            "org_id", "request_id", name=op.f("uq_tool_policy_rules_org_id_request_id")
        ),
    )
    with op.batch_alter_table("tool_policy_rules", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_tool_policy_rules_org_id_create_time_id"),
            ["org_id", "create_time", "id"],
            unique=False,
        )
    # Plain ADD COLUMN (no batch rebuild of users, which would drop SQLite's guard
    # triggers); the server default fills the existing rows.
    op.add_column("users", sa.Column("groups", sa.JSON(), server_default="[]", nullable=False))
    if op.get_bind().dialect.name == "postgresql":
        _postgres_grants_and_row_level_security()
    else:  # SQLite's second wall (migration 0009) for the new tenant table
        for table in TENANT:
            for statement in guard_statements(table):
                op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        for table in TENANT:
            for statement in drop_statements(table):
                op.execute(statement)
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("groups")
    if op.get_bind().dialect.name != "postgresql":
        # SQLite's batch mode rebuilt users, and its guard triggers went with it.
        for statement in guard_statements("users"):
            op.execute(statement)
    with op.batch_alter_table("tool_policy_rules", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tool_policy_rules_org_id_create_time_id"))
    op.drop_table("tool_policy_rules")  # drops its row-level-security policy with it
