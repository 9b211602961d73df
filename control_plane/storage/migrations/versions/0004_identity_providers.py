"""identity providers: one trusted OIDC issuer of user assertions per org

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 10:12:40.118402
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import control_plane.storage.types

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "identity_providers",
        sa.Column("org_id", sa.String(length=32), nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("issuer", sa.String(length=2048), nullable=False),
        sa.Column("discovery_url", sa.String(length=2048), nullable=False),
        sa.Column("jwks_json", sa.Text(), nullable=False),
        sa.Column("audience", sa.String(length=512), nullable=False),
        sa.Column("subject_claim", sa.String(length=64), nullable=False),
        sa.Column("claim_equals", sa.JSON(), nullable=False),
        sa.Column("algorithms", sa.JSON(), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("request_fingerprint", sa.String(length=64), nullable=True),
        sa.Column(
            "create_time", control_plane.storage.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_identity_providers_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("org_id", "id", name=op.f("pk_identity_providers")),
        sa.UniqueConstraint("org_id", name=op.f("uq_identity_providers_org_id")),
        sa.UniqueConstraint(
            "org_id", "request_id", name=op.f("uq_identity_providers_org_id_request_id")
        ),
    )
    with op.batch_alter_table("identity_providers", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_identity_providers_org_id_create_time_id"),
            ["org_id", "create_time", "id"],
            unique=False,
        )

    if op.get_bind().dialect.name == "postgresql":
        # Same wall as 0001-0003: the runtime role sees only its org's rows.
        op.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON identity_providers TO agentauth_app")
        op.execute("ALTER TABLE identity_providers ENABLE ROW LEVEL SECURITY")
        op.execute("ALTER TABLE identity_providers FORCE ROW LEVEL SECURITY")
        op.execute(
            "CREATE POLICY org_isolation ON identity_providers "
            "USING (org_id = current_setting('app.org_id', true)) "
            "WITH CHECK (org_id = current_setting('app.org_id', true))"
        )


def downgrade() -> None:
    with op.batch_alter_table("identity_providers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_identity_providers_org_id_create_time_id"))

    op.drop_table("identity_providers")
