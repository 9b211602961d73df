"""SQLite's second wall: triggers that refuse writes to another org's rows.

PostgreSQL has row-level security keyed on ``app.org_id``. SQLite has none, so
every tenant table gets three triggers calling ``agentauth_org()`` — a function
each connection of :class:`~control_plane.storage.db.Database` registers, which
answers the org of the transaction running on it (NULL outside an org
transaction, ``'*'`` on the owner's maintenance connections). An INSERT, UPDATE
or DELETE of a row whose ``org_id`` is not that org aborts the statement, as a
``WITH CHECK`` policy would on PostgreSQL.

Migrations that create a tenant table call :func:`create_guard`; one that
rebuilds a tenant table in SQLite batch mode (which drops its triggers) must call
it again. ``tests/storage/test_org_guard.py`` checks every tenant table has them.
"""

from __future__ import annotations

FUNCTION = "agentauth_org"
BYPASS = "*"
GUARD_MESSAGE = "agentauth: a row of another organization"
_ABORT = f"SELECT RAISE(ABORT, '{GUARD_MESSAGE}')"


def guard_statements(table: str) -> list[str]:
    """The CREATE TRIGGER statements guarding ``table`` (an internal, constant name)."""
    current = f"{FUNCTION}()"
    outside = f"{current} IS NOT '{BYPASS}'"
    return [
        f"CREATE TRIGGER IF NOT EXISTS agentauth_guard_{table}_insert BEFORE INSERT ON {table} "
        f"WHEN {outside} AND NEW.org_id IS NOT {current} BEGIN {_ABORT}; END",
        f"CREATE TRIGGER IF NOT EXISTS agentauth_guard_{table}_update BEFORE UPDATE ON {table} "
        f"WHEN {outside} AND (OLD.org_id IS NOT {current} OR NEW.org_id IS NOT {current}) "
        f"BEGIN {_ABORT}; END",
        f"CREATE TRIGGER IF NOT EXISTS agentauth_guard_{table}_delete BEFORE DELETE ON {table} "
        f"WHEN {outside} AND OLD.org_id IS NOT {current} BEGIN {_ABORT}; END",
    ]


def drop_statements(table: str) -> list[str]:
    return [
        f"DROP TRIGGER IF EXISTS agentauth_guard_{table}_{event}"
        for event in ("insert", "update", "delete")
    ]
