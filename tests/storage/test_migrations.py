"""Migrations: head matches the models, and the newest revision downgrades and re-applies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from control_plane.storage.db import Database
from control_plane.storage.migrate import alembic_config
from control_plane.storage.models import Base


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_url(request: pytest.FixtureRequest, pg_server: Any, tmp_path: Path) -> str:
    """An empty, never-migrated database on each backend."""
    if request.param == "postgresql":
        if pg_server is None:
            pytest.skip("PostgreSQL unreachable")
        return str(pg_server.new_database())
    return f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"


async def _on_owner_connection(url: str, work: Any) -> Any:
    db = Database(url, app_role=None)
    try:
        async with db.engine.begin() as conn:
            return await conn.run_sync(work)
    finally:
        await db.dispose()


def _alembic(url: str, conn: Connection, action: str, revision: str) -> None:
    cfg = alembic_config(url)
    cfg.attributes["connection"] = conn
    getattr(command, action)(cfg, revision)


def _schema(conn: Connection) -> dict[str, set[str]]:
    insp = inspect(conn)
    return {t: {c["name"] for c in insp.get_columns(t)} for t in insp.get_table_names()}


async def test_rate_limits_migration_upgrades_downgrades_and_matches_the_models(
    fresh_url: str,
) -> None:
    def work(conn: Connection) -> None:
        _alembic(fresh_url, conn, "upgrade", "head")
        at_head = _schema(conn)
        assert (
            compare_metadata(
                MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
            )
            == []
        )
        assert {"rate_buckets", "anonymous_rate_buckets"} <= at_head.keys()

        _alembic(fresh_url, conn, "downgrade", "0009")
        before = _schema(conn)
        assert "rate_buckets" not in before and "anonymous_rate_buckets" not in before
        assert "rate_limit_rps" not in before["organizations"]

        _alembic(fresh_url, conn, "upgrade", "head")
        assert _schema(conn) == at_head

    await _on_owner_connection(fresh_url, work)


def _guard_triggers(conn: Connection) -> set[str]:
    if conn.dialect.name != "sqlite":
        return set()
    found = conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'trigger'")
    return {str(name) for (name,) in found.all()}


async def test_tool_policy_migration_upgrades_downgrades_and_keeps_the_users_guard(
    fresh_url: str,
) -> None:
    def work(conn: Connection) -> None:
        _alembic(fresh_url, conn, "upgrade", "0011")
        conn.exec_driver_sql(
            "INSERT INTO organizations (id, display_name, state, create_time, update_time) "
            "VALUES ('o1', 'o', 'ACTIVE', '2026-01-01', '2026-01-01')"
        )
        conn.exec_driver_sql(
            "INSERT INTO users (org_id, id, external_id, display_name, email, state, "
            "create_time, update_time) "
            "VALUES ('o1', 'u1', 'x', '', '', 'ACTIVE', '2026-01-01', '2026-01-01')"
        )
        _alembic(fresh_url, conn, "upgrade", "head")
        at_head = _schema(conn)
        triggers = _guard_triggers(conn)
        assert "tool_policy_rules" in at_head and "groups" in at_head["users"]
        # A user who existed before the migration is in no group (not NULL).
        groups = conn.exec_driver_sql("SELECT groups FROM users WHERE id = 'u1'").scalar_one()
        assert groups in ("[]", [])
        if conn.dialect.name == "sqlite":
            assert {
                "agentauth_guard_tool_policy_rules_insert",
                "agentauth_guard_users_update",
            } <= triggers

        _alembic(fresh_url, conn, "downgrade", "0011")
        before = _schema(conn)
        assert "tool_policy_rules" not in before and "groups" not in before["users"]
        # SQLite rebuilt users to drop the column: its org guard must still be there.
        assert {t for t in _guard_triggers(conn) if "_users_" in t} == {
            t for t in triggers if "_users_" in t
        }

        _alembic(fresh_url, conn, "upgrade", "head")
        assert _schema(conn) == at_head
        assert _guard_triggers(conn) == triggers

    await _on_owner_connection(fresh_url, work)


async def test_tool_confirmations_migration_upgrades_downgrades_and_keeps_the_guards(
    fresh_url: str,
) -> None:
    def work(conn: Connection) -> None:
        _alembic(fresh_url, conn, "upgrade", "0013")
        conn.exec_driver_sql(
            "INSERT INTO organizations (id, display_name, state, create_time, update_time) "
            "VALUES ('o1', 'o', 'ACTIVE', '2026-01-01', '2026-01-01')"
        )
        conn.exec_driver_sql(
            "INSERT INTO tool_policy_rules (org_id, id, tool, constraints, confirm, "
            "description, create_time) VALUES ('o1', 'r1', '*', '[]', true, '', '2026-01-01')"
        )
        _alembic(fresh_url, conn, "upgrade", "head")
        at_head = _schema(conn)
        triggers = _guard_triggers(conn)
        assert "tool_confirmations" in at_head
        assert {"approver_ids", "approver_groups"} <= at_head["tool_policy_rules"]
        # A rule made before names no approvers: the principal approves, as it would have.
        named = conn.exec_driver_sql(
            "SELECT approver_ids, approver_groups FROM tool_policy_rules WHERE id = 'r1'"
        ).one()
        assert tuple(named) == (None, None)
        if conn.dialect.name == "sqlite":
            assert {
                "agentauth_guard_tool_confirmations_insert",
                "agentauth_guard_tool_policy_rules_update",
            } <= triggers

        _alembic(fresh_url, conn, "downgrade", "0013")
        before = _schema(conn)
        assert "tool_confirmations" not in before
        assert "approver_ids" not in before["tool_policy_rules"]
        # SQLite rebuilt tool_policy_rules to drop the columns: its guard stays.
        assert {t for t in _guard_triggers(conn) if "_tool_policy_rules_" in t} == {
            t for t in triggers if "_tool_policy_rules_" in t
        }

        _alembic(fresh_url, conn, "upgrade", "head")
        assert _schema(conn) == at_head
        assert _guard_triggers(conn) == triggers

    await _on_owner_connection(fresh_url, work)
