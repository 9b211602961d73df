"""sqlite: triggers refusing writes to another organization's rows

SQLite has no row-level security; these triggers are its second wall behind the
repositories' org filters (see control_plane/storage/sqlite_guard.py).
PostgreSQL is unchanged (row-level security already does this there).

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from alembic import op

from control_plane.storage.sqlite_guard import drop_statements, guard_statements

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# The tenant tables at this revision (a migration is a frozen snapshot).
TENANT = (
    "org_deks",
    "users",
    "agents",
    "service_accounts",
    "org_api_keys",
    "trust_policies",
    "issued_tokens",
    "delegation_rules",
    "identity_providers",
    "used_assertions",
    "revocation_events",
    "org_oauth_apps",
    "org_connectors",
    "org_developer_secrets",
    "connected_accounts",
    "connect_links",
    "account_events",
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in TENANT:
        for statement in guard_statements(table):
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in TENANT:
        for statement in drop_statements(table):
            op.execute(statement)
