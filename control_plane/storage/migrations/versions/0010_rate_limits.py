"""rate limits: shared token buckets (per org, per principal, per anonymous peer), org overrides

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29 10:00:00
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

import control_plane.storage.types
from control_plane.storage.sqlite_guard import drop_statements, guard_statements

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

APP_ROLE = "agentauth_app"
TENANT = ("rate_buckets",)
PLATFORM = ("anonymous_rate_buckets",)
ORG_OVERRIDES: tuple[tuple[str, sa.types.TypeEngine[Any]], ...] = (
    ("rate_limit_rps", sa.Double()),
    ("rate_limit_burst", sa.Integer()),
    ("principal_rate_limit_rps", sa.Double()),
    ("principal_rate_limit_burst", sa.Integer()),
)


def _postgres_grants_and_row_level_security() -> None:
    for table in (*TENANT, *PLATFORM):
        op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {APP_ROLE}")
    for table in TENANT:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY org_isolation ON {table} "
            "USING (org_id = current_setting('app.org_id', true)) "
            "WITH CHECK (org_id = current_setting('app.org_id', true))"
        )


def upgrade() -> None:
    op.create_table(
        "rate_buckets",
        sa.Column("org_id", sa.String(length=32), nullable=False),
        sa.Column("bucket_key", sa.String(length=128), nullable=False),
        sa.Column("tokens", sa.Double(), nullable=False),
        sa.Column("leased", sa.Integer(), nullable=False),
        sa.Column("updated_at", control_plane.storage.types.EpochMicros(), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_rate_buckets_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("org_id", "bucket_key", name=op.f("pk_rate_buckets")),
    )
    op.create_table(
        "anonymous_rate_buckets",
        sa.Column("bucket_key", sa.String(length=128), nullable=False),
        sa.Column("tokens", sa.Double(), nullable=False),
        sa.Column("leased", sa.Integer(), nullable=False),
        sa.Column("updated_at", control_plane.storage.types.EpochMicros(), nullable=False),
        sa.PrimaryKeyConstraint("bucket_key", name=op.f("pk_anonymous_rate_buckets")),
    )
    with op.batch_alter_table("anonymous_rate_buckets", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_anonymous_rate_buckets_updated_at"), ["updated_at"], unique=False
        )
    with op.batch_alter_table("organizations", schema=None) as batch_op:
        for name, type_ in ORG_OVERRIDES:
            batch_op.add_column(sa.Column(name, type_, nullable=True))
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
    with op.batch_alter_table("organizations", schema=None) as batch_op:
        for name, _ in reversed(ORG_OVERRIDES):
            batch_op.drop_column(name)
    with op.batch_alter_table("anonymous_rate_buckets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_anonymous_rate_buckets_updated_at"))
    op.drop_table("anonymous_rate_buckets")
    op.drop_table("rate_buckets")  # drops its row-level-security policy with it
