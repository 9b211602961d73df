"""delegation

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 17:33:24.555724
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import control_plane.storage.types

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "delegation_rules",
        sa.Column("org_id", sa.String(length=32), nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("delegator_agent_id", sa.String(length=32), nullable=False),
        sa.Column("delegate_agent_id", sa.String(length=32), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("request_fingerprint", sa.String(length=64), nullable=True),
        sa.Column(
            "create_time", control_plane.storage.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["org_id", "delegate_agent_id"],
            ["agents.org_id", "agents.id"],
            name="fk_delegation_rules_delegate",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["org_id", "delegator_agent_id"],
            ["agents.org_id", "agents.id"],
            name="fk_delegation_rules_delegator",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_delegation_rules_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("org_id", "id", name=op.f("pk_delegation_rules")),
        sa.UniqueConstraint(
            "org_id",
            "delegator_agent_id",
            "delegate_agent_id",
            name=op.f("uq_delegation_rules_org_id_delegator_agent_id_delegate_agent_id"),
        ),
        sa.UniqueConstraint(
            "org_id", "request_id", name=op.f("uq_delegation_rules_org_id_request_id")
        ),
    )
    with op.batch_alter_table("delegation_rules", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_delegation_rules_org_id_create_time_id"),
            ["org_id", "create_time", "id"],
            unique=False,
        )

    op.create_index("ix_issued_tokens_org_id_parent_jti", "issued_tokens", ["org_id", "parent_jti"])
    # Plain ADD COLUMN: no batch rebuild of organizations (see 0002).
    op.add_column(
        "organizations",
        sa.Column("max_delegation_depth", sa.Integer(), server_default="4", nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON delegation_rules TO agentauth_app")
        op.execute("ALTER TABLE delegation_rules ENABLE ROW LEVEL SECURITY")
        op.execute("ALTER TABLE delegation_rules FORCE ROW LEVEL SECURITY")
        op.execute(
            "CREATE POLICY org_isolation ON delegation_rules "
            "USING (org_id = current_setting('app.org_id', true)) "
            "WITH CHECK (org_id = current_setting('app.org_id', true))"
        )


def downgrade() -> None:
    op.drop_column("organizations", "max_delegation_depth")
    op.drop_index("ix_issued_tokens_org_id_parent_jti", table_name="issued_tokens")

    with op.batch_alter_table("delegation_rules", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_delegation_rules_org_id_create_time_id"))

    op.drop_table("delegation_rules")
