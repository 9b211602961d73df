"""revocation feed: revocation_events, and children refused under a revoked parent

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 19:05:00

Revocations of one org are serialized by a transaction-level advisory lock
keyed on the org. Recording a child token takes the same lock in shared mode
and then checks that its parent is still live. Either the child commits first
(and the revocation's tree, computed after the lock, includes it) or the
revocation commits first (and the child is refused). So every event lists every
descendant that will ever exist, and an offline validator needs nothing but the
jtis. The same lock makes an org's event ``seq`` order its commit order, so a
watcher's cursor never skips an event that commits late.
"""

from __future__ import annotations

import importlib

import sqlalchemy as sa
from alembic import op

import control_plane.storage.types

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

APP_ROLE = "agentauth_app"

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
        IF r->>'parent_jti' IS NOT NULL THEN
            -- Wait out any revocation in flight in this org, then look again
            -- (each statement of a volatile function takes a fresh snapshot).
            PERFORM pg_advisory_xact_lock_shared(
                hashtextextended('agentauth.revocation:' || (r->>'org_id'), 0));
            IF NOT EXISTS (SELECT 1 FROM issued_tokens
                           WHERE org_id = r->>'org_id' AND jti = r->>'parent_jti'
                             AND revoke_time IS NULL) THEN
                RAISE EXCEPTION 'the parent token is revoked' USING ERRCODE = 'AAR01';
            END IF;
        END IF;
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
        "revocation_events",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("org_id", sa.String(length=32), nullable=False),
        sa.Column("jtis", sa.JSON(), nullable=False),
        sa.Column(
            "revoke_time", control_plane.storage.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "expire_time", control_plane.storage.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_revocation_events_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_revocation_events")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("revocation_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_revocation_events_org_id_seq"), ["org_id", "seq"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_revocation_events_org_id_expire_time"),
            ["org_id", "expire_time"],
            unique=False,
        )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON revocation_events TO {APP_ROLE}")
        op.execute(f"GRANT USAGE, SELECT ON SEQUENCE revocation_events_seq_seq TO {APP_ROLE}")
        op.execute("ALTER TABLE revocation_events ENABLE ROW LEVEL SECURITY")
        op.execute("ALTER TABLE revocation_events FORCE ROW LEVEL SECURITY")
        op.execute(
            "CREATE POLICY org_isolation ON revocation_events "
            "USING (org_id = current_setting('app.org_id', true)) "
            "WITH CHECK (org_id = current_setting('app.org_id', true))"
        )
        op.execute(RECORD_FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # Back to revision 0002's function, which records children unconditionally.
        previous = importlib.import_module(
            "control_plane.storage.migrations.versions.0002_workload_identity"
        )
        op.execute(previous.RECORD_FUNCTION)
    with op.batch_alter_table("revocation_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_revocation_events_org_id_expire_time"))
        batch_op.drop_index(batch_op.f("ix_revocation_events_org_id_seq"))
    op.drop_table("revocation_events")
