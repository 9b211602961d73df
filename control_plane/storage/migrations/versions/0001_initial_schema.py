"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-28 16:05:07.893718
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import control_plane.storage.types

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


# Frozen at this revision: the tables that hold tenant rows.
TENANT_TABLES = ("org_deks", "users", "agents", "service_accounts", "org_api_keys")
APP_ROLE = "agentauth_app"


def _postgres_row_level_security() -> None:
    """Second wall: a forgotten org filter returns nothing instead of another org's rows.

    The runtime connects, then ``SET ROLE agentauth_app`` (not the owner), and each
    org-scoped transaction sets ``app.org_id`` with ``set_config(..., true)``. With
    ``FORCE ROW LEVEL SECURITY`` even the owner is filtered. Without the setting,
    ``current_setting('app.org_id', true)`` is NULL and no row matches.
    """
    op.execute(
        f"""
        DO $$
        BEGIN
          IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
            CREATE ROLE {APP_ROLE} NOLOGIN NOSUPERUSER NOBYPASSRLS;
          END IF;
        END
        $$;
        """
    )
    op.execute(
        f"""
        DO $$
        BEGIN
          IF NOT pg_has_role(current_user, '{APP_ROLE}', 'MEMBER') THEN
            EXECUTE format('GRANT {APP_ROLE} TO %I', current_user);
          END IF;
        END
        $$;
        """
    )
    op.execute(f"GRANT USAGE ON SCHEMA public TO {APP_ROLE}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {APP_ROLE}")
    op.execute(f"REVOKE INSERT, UPDATE, DELETE ON alembic_version FROM {APP_ROLE}")
    op.execute(
        "ALTER DEFAULT PRIVILEGES IN SCHEMA public "
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {APP_ROLE}"
    )
    for table in TENANT_TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY org_isolation ON {table} "
            "USING (org_id = current_setting('app.org_id', true)) "
            "WITH CHECK (org_id = current_setting('app.org_id', true))"
        )


def upgrade() -> None:
    op.create_table(
        "organizations",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("request_fingerprint", sa.String(length=64), nullable=True),
        sa.Column(
            "create_time", control_plane.storage.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "update_time", control_plane.storage.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_organizations")),
        sa.UniqueConstraint("request_id", name=op.f("uq_organizations_request_id")),
    )
    with op.batch_alter_table("organizations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_organizations_create_time_id"), ["create_time", "id"], unique=False
        )

    op.create_table(
        "platform_api_keys",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("secret_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("key_hint", sa.String(length=8), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("request_fingerprint", sa.String(length=64), nullable=True),
        sa.Column(
            "create_time", control_plane.storage.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "revoke_time", control_plane.storage.types.UTCDateTime(timezone=True), nullable=True
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_platform_api_keys")),
        sa.UniqueConstraint("request_id", name=op.f("uq_platform_api_keys_request_id")),
    )
    with op.batch_alter_table("platform_api_keys", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_platform_api_keys_create_time_id"), ["create_time", "id"], unique=False
        )

    op.create_table(
        "signing_keys",
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("alg", sa.String(length=16), nullable=False),
        sa.Column("public_jwk", sa.Text(), nullable=False),
        sa.Column("sealed_private_key", sa.LargeBinary(), nullable=False),
        sa.Column(
            "create_time", control_plane.storage.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "publish_time", control_plane.storage.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "activate_time", control_plane.storage.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "taint_time", control_plane.storage.types.UTCDateTime(timezone=True), nullable=True
        ),
        sa.PrimaryKeyConstraint("kid", name=op.f("pk_signing_keys")),
    )
    op.create_table(
        "system_deks",
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("wrapped_dek", sa.LargeBinary(), nullable=False),
        sa.Column("kek_version", sa.String(length=64), nullable=False),
        sa.Column(
            "create_time", control_plane.storage.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_system_deks")),
    )
    op.create_table(
        "agents",
        sa.Column("org_id", sa.String(length=32), nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.String(length=2000), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("request_fingerprint", sa.String(length=64), nullable=True),
        sa.Column(
            "create_time", control_plane.storage.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "update_time", control_plane.storage.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_agents_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("org_id", "id", name=op.f("pk_agents")),
        sa.UniqueConstraint("org_id", "request_id", name=op.f("uq_agents_org_id_request_id")),
    )
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_agents_org_id_create_time_id"),
            ["org_id", "create_time", "id"],
            unique=False,
        )

    op.create_table(
        "org_api_keys",
        sa.Column("org_id", sa.String(length=32), nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("secret_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("key_hint", sa.String(length=8), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("request_fingerprint", sa.String(length=64), nullable=True),
        sa.Column(
            "create_time", control_plane.storage.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "revoke_time", control_plane.storage.types.UTCDateTime(timezone=True), nullable=True
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_org_api_keys_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("org_id", "id", name=op.f("pk_org_api_keys")),
        sa.UniqueConstraint("org_id", "request_id", name=op.f("uq_org_api_keys_org_id_request_id")),
    )
    with op.batch_alter_table("org_api_keys", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_org_api_keys_org_id_create_time_id"),
            ["org_id", "create_time", "id"],
            unique=False,
        )

    op.create_table(
        "org_deks",
        sa.Column("org_id", sa.String(length=32), nullable=False),
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("wrapped_dek", sa.LargeBinary(), nullable=False),
        sa.Column("kek_version", sa.String(length=64), nullable=False),
        sa.Column(
            "create_time", control_plane.storage.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_org_deks_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("org_id", "version", name=op.f("pk_org_deks")),
    )
    op.create_table(
        "service_accounts",
        sa.Column("org_id", sa.String(length=32), nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("purpose", sa.String(length=63), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("request_fingerprint", sa.String(length=64), nullable=True),
        sa.Column(
            "create_time", control_plane.storage.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "update_time", control_plane.storage.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_service_accounts_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("org_id", "id", name=op.f("pk_service_accounts")),
        sa.UniqueConstraint("org_id", "purpose", name=op.f("uq_service_accounts_org_id_purpose")),
        sa.UniqueConstraint(
            "org_id", "request_id", name=op.f("uq_service_accounts_org_id_request_id")
        ),
    )
    with op.batch_alter_table("service_accounts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_service_accounts_org_id_create_time_id"),
            ["org_id", "create_time", "id"],
            unique=False,
        )

    op.create_table(
        "users",
        sa.Column("org_id", sa.String(length=32), nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("external_id", sa.String(length=255), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("request_fingerprint", sa.String(length=64), nullable=True),
        sa.Column(
            "create_time", control_plane.storage.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "update_time", control_plane.storage.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_users_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("org_id", "id", name=op.f("pk_users")),
        sa.UniqueConstraint("org_id", "external_id", name=op.f("uq_users_org_id_external_id")),
        sa.UniqueConstraint("org_id", "request_id", name=op.f("uq_users_org_id_request_id")),
    )
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_users_org_id_create_time_id"),
            ["org_id", "create_time", "id"],
            unique=False,
        )

    if op.get_bind().dialect.name == "postgresql":
        _postgres_row_level_security()


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_users_org_id_create_time_id"))

    op.drop_table("users")
    with op.batch_alter_table("service_accounts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_service_accounts_org_id_create_time_id"))

    op.drop_table("service_accounts")
    op.drop_table("org_deks")
    with op.batch_alter_table("org_api_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_org_api_keys_org_id_create_time_id"))

    op.drop_table("org_api_keys")
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_agents_org_id_create_time_id"))

    op.drop_table("agents")
    op.drop_table("system_deks")
    op.drop_table("signing_keys")
    with op.batch_alter_table("platform_api_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_platform_api_keys_create_time_id"))

    op.drop_table("platform_api_keys")
    with op.batch_alter_table("organizations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_organizations_create_time_id"))

    op.drop_table("organizations")
