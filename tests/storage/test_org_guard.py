"""The second wall on both backends: a query that forgets its org filter inside an
org transaction reads nothing of another org and cannot write to it.

PostgreSQL: row-level security (tests/storage/test_row_level_security.py goes
further there). SQLite: triggers calling the connection's ``agentauth_org()`` for
writes, and org criteria added to every ORM read of a tenant entity.
"""

from __future__ import annotations

import datetime as dt

import pytest

from control_plane.domain.errors import AgentAuthError
from sqlalchemy import delete, select, text, update

from control_plane.ids import new_id
from control_plane.storage.db import Database
from control_plane.storage.models import TENANT_TABLES, User
from tests.scopes import add_org, org_session, scope

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


async def _user(db: Database, org_id: str) -> str:
    user_id = new_id()
    async with db.org_tx(scope(org_id)) as tx:
        await tx.users.add(
            User(
                org_id=org_id,
                id=user_id,
                external_id=user_id,
                display_name="",
                email="",
                state="ACTIVE",
                create_time=NOW,
                update_time=NOW,
            )
        )
    return user_id


async def test_a_forgotten_filter_reads_only_the_transactions_org(db: Database) -> None:
    a, b = await add_org(db), await add_org(db)
    await _user(db, a)
    user_b = await _user(db, b)
    async with org_session(db, a) as s:
        everyone = (await s.execute(select(User))).scalars().all()
        assert {u.org_id for u in everyone} == {a}
        assert (await s.execute(select(User).where(User.id == user_b))).first() is None
        assert await s.get(User, (b, user_b)) is None


async def test_a_forgotten_filter_cannot_write_another_orgs_rows(db: Database) -> None:
    a, b = await add_org(db), await add_org(db)
    user_b = await _user(db, b)
    async with org_session(db, a) as s:
        # ORM statements without an org filter: the wall turns them into no-ops...
        await s.execute(update(User).where(User.id == user_b).values(display_name="pwned"))
        await s.execute(delete(User).where(User.id == user_b))
    # ...and raw SQL that would reach another org's row fails (SQLite: the trigger;
    # PostgreSQL: the policy filters the UPDATE to nothing, WITH CHECK refuses the INSERT).
    with pytest.raises(Exception) as refused:
        async with org_session(db, a) as s:
            await s.execute(
                text(
                    "INSERT INTO users (org_id, id, external_id, display_name, email, state, "
                    "create_time, update_time) VALUES (:o, :i, 'x', '', '', 'ACTIVE', :t, :t)"
                ),
                {"o": b, "i": new_id(), "t": NOW.replace(tzinfo=None)},
            )
    _assert_walled(refused.value)
    if not db.is_postgres:
        with pytest.raises(AgentAuthError) as refused:
            async with org_session(db, a) as s:
                await s.execute(
                    text("UPDATE users SET display_name = 'pwned' WHERE id = :i"), {"i": user_b}
                )
        _assert_walled(refused.value)
    async with db.org_tx(scope(b)) as tx:
        row = await tx.users.get(user_b)
    assert row is not None and row.display_name == ""


async def test_outside_an_org_transaction_no_tenant_row_can_be_written(db: Database) -> None:
    org = await add_org(db)
    with pytest.raises(Exception) as refused:
        async with db.platform_tx() as tx:
            await tx._session.execute(
                text(
                    "INSERT INTO users (org_id, id, external_id, display_name, email, state, "
                    "create_time, update_time) VALUES (:o, :i, 'x', '', '', 'ACTIVE', :t, :t)"
                ),
                {"o": org, "i": new_id(), "t": NOW.replace(tzinfo=None)},
            )
    _assert_walled(refused.value)


def _assert_walled(exc: BaseException) -> None:
    """SQLite: the guard (INTERNAL, the cause in the private debug text); PostgreSQL: RLS."""
    text_ = f"{exc} {getattr(exc, 'debug', '')}"
    assert "another organization" in text_ or "row-level security" in text_, text_
    if isinstance(exc, AgentAuthError):
        assert exc.code == "INTERNAL"


async def test_every_tenant_table_is_guarded_on_sqlite(db: Database) -> None:
    if db.is_postgres:
        pytest.skip("PostgreSQL guards tenant tables with row-level security")
    owner = Database(db.url, app_role=None)
    try:
        async with owner.engine.connect() as conn:
            found = await conn.execute(
                text("SELECT tbl_name, name FROM sqlite_master WHERE type = 'trigger'")
            )
            triggers = {(t, n) for t, n in found.all()}
    finally:
        await owner.dispose()
    for table in TENANT_TABLES:
        for event in ("insert", "update", "delete"):
            assert (table, f"agentauth_guard_{table}_{event}") in triggers, (table, event)
