"""workload identity: trust policies, issued tokens, used assertions

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 16:39:06.408743
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import control_plane.storage.types

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


NEW_TENANT_TABLES = ("trust_policies", "issued_tokens", "used_assertions")
APP_ROLE = "agentauth_app"


def _postgres_row_level_security() -> None:
    """Same wall as revision 0001 for the new tenant tables."""
    for table in NEW_TENANT_TABLES:
        op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {APP_ROLE}")
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY org_isolation ON {table} "
            "USING (org_id = current_setting('app.org_id', true)) "
            "WITH CHECK (org_id = current_setting('app.org_id', true))"
        )
    op.execute(RECORD_FUNCTION)
    op.execute(f"GRANT EXECUTE ON FUNCTION agentauth_record_issued_tokens(json) TO {APP_ROLE}")


RECORD_FUNCTION = """
CREATE OR REPLACE FUNCTION agentauth_record_issued_tokens(p_rows json)
RETURNS void LANGUAGE plpgsql SECURITY INVOKER AS $$
DECLARE
    r json;
BEGIN
    -- One statement records a batch of tokens (group commit on the mint path).
    -- Each row sets its own org before its insert, so row-level security still
    -- checks every row against the org it claims.
    FOR r IN SELECT * FROM json_array_elements(p_rows) LOOP
        PERFORM set_config('app.org_id', r->>'org_id', true);
        INSERT INTO issued_tokens (org_id, jti, subject, client_id, scopes, audiences,
                                   issue_time, expire_time, revoke_time,
                                   parent_jti, root_jti, txn)
        VALUES (r->>'org_id', r->>'jti', r->>'subject', r->>'client_id',
                r->'scopes', r->'audiences', (r->>'issue_time')::timestamptz,
                (r->>'expire_time')::timestamptz, NULL,
                r->>'parent_jti', r->>'root_jti', r->>'txn');
    END LOOP;
    PERFORM set_config('app.org_id', '', true);
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "issued_tokens",
        sa.Column("org_id", sa.String(length=32), nullable=False),
        sa.Column("jti", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=256), nullable=False),
        sa.Column("client_id", sa.String(length=256), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("audiences", sa.JSON(), nullable=False),
        sa.Column(
            "issue_time", control_plane.storage.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "expire_time", control_plane.storage.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "revoke_time", control_plane.storage.types.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("parent_jti", sa.String(length=64), nullable=True),
        sa.Column("root_jti", sa.String(length=64), nullable=True),
        sa.Column("txn", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_issued_tokens_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("org_id", "jti", name=op.f("pk_issued_tokens")),
    )
    with op.batch_alter_table("issued_tokens", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_issued_tokens_org_id_expire_time"),
            ["org_id", "expire_time"],
            unique=False,
        )

    op.create_table(
        "used_assertions",
        sa.Column("org_id", sa.String(length=32), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column(
            "expire_time", control_plane.storage.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_used_assertions_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("org_id", "digest", name=op.f("pk_used_assertions")),
    )
    with op.batch_alter_table("used_assertions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_used_assertions_org_id_expire_time"),
            ["org_id", "expire_time"],
            unique=False,
        )

    op.create_table(
        "trust_policies",
        sa.Column("org_id", sa.String(length=32), nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("agent_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("issuer", sa.String(length=2048), nullable=False),
        sa.Column("discovery_url", sa.String(length=2048), nullable=False),
        sa.Column("jwks_json", sa.Text(), nullable=False),
        sa.Column("audience", sa.String(length=2048), nullable=False),
        sa.Column("subject", sa.String(length=2048), nullable=False),
        sa.Column("subject_pattern", sa.String(length=2048), nullable=False),
        sa.Column("claim_equals", sa.JSON(), nullable=False),
        sa.Column("algorithms", sa.JSON(), nullable=False),
        sa.Column("service_account_ids", sa.JSON(), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("audiences", sa.JSON(), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("request_fingerprint", sa.String(length=64), nullable=True),
        sa.Column(
            "create_time", control_plane.storage.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["org_id", "agent_id"],
            ["agents.org_id", "agents.id"],
            name=op.f("fk_trust_policies_org_id_agents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_trust_policies_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("org_id", "id", name=op.f("pk_trust_policies")),
        sa.UniqueConstraint(
            "org_id", "request_id", name=op.f("uq_trust_policies_org_id_request_id")
        ),
    )
    with op.batch_alter_table("trust_policies", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_trust_policies_org_id_agent_id_create_time_id"),
            ["org_id", "agent_id", "create_time", "id"],
            unique=False,
        )

    # Plain ADD COLUMN (no batch table rebuild): rebuilding organizations on SQLite
    # with foreign keys on would cascade-delete every tenant row.
    op.add_column(
        "organizations",
        sa.Column("access_token_ttl_seconds", sa.Integer(), server_default="300", nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        _postgres_row_level_security()


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS agentauth_record_issued_tokens(json)")
    op.drop_column("organizations", "access_token_ttl_seconds")

    with op.batch_alter_table("trust_policies", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_trust_policies_org_id_agent_id_create_time_id"))

    op.drop_table("trust_policies")
    with op.batch_alter_table("used_assertions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_used_assertions_org_id_expire_time"))

    op.drop_table("used_assertions")
    with op.batch_alter_table("issued_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_issued_tokens_org_id_expire_time"))

    op.drop_table("issued_tokens")
