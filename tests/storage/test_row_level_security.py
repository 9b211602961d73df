"""PostgreSQL row-level security: the second wall behind the repositories' filters."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select, text

from control_plane.ids import new_id
from control_plane.storage.db import Database
from control_plane.storage.models import TENANT_TABLES, Organization, User
from tests.scopes import org_session, scope

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


async def _org_with_user(db: Database) -> tuple[str, str]:
    org_id, user_id = new_id(), new_id()
    async with db.org_tx(scope(org_id)) as tx:
        await tx.create_org(
            Organization(
                id=org_id, display_name="o", state="ACTIVE", create_time=NOW, update_time=NOW
            )
        )
        await tx.users.add(
            User(
                org_id=org_id,
                id=user_id,
                external_id="e",
                display_name="",
                email="",
                state="ACTIVE",
                create_time=NOW,
                update_time=NOW,
            )
        )
    return org_id, user_id


async def test_repository_sees_only_its_org(db: Database) -> None:
    org_a, user_a = await _org_with_user(db)
    org_b, _ = await _org_with_user(db)
    async with db.org_tx(scope(org_b)) as tx:
        assert await tx.users.get(user_a) is None
    async with db.org_tx(scope(org_a)) as tx:
        repo = tx.users
        assert (await repo.get(user_a)) is not None
        with pytest.raises(ValueError):
            await repo.add(
                User(
                    org_id=org_b,
                    id=new_id(),
                    external_id="x",
                    display_name="",
                    email="",
                    state="ACTIVE",
                    create_time=NOW,
                    update_time=NOW,
                )
            )


@pytest.mark.postgres_only
async def test_query_without_org_filter_or_setting_sees_nothing(db: Database) -> None:
    if not db.is_postgres:
        pytest.skip("row-level security is a PostgreSQL feature")
    org_a, _ = await _org_with_user(db)
    org_b, user_b = await _org_with_user(db)
    # A query that forgets its org filter, with no org setting: 0 rows.
    async with db.platform_tx() as tx:
        s = tx._session
        for table in TENANT_TABLES:
            count = (await s.execute(text(f"SELECT count(*) FROM {table}"))).scalar()
            assert count == 0, table
    # The same forgotten filter inside org A's transaction: only A's rows.
    async with org_session(db, org_a) as s:
        rows = (await s.execute(select(User))).scalars().all()
        assert {r.org_id for r in rows} == {org_a}
        # Writing a row for org B from A's transaction is refused by the policy.
        await s.execute(text("SAVEPOINT probe"))
        with pytest.raises(Exception, match="row-level security"):
            await s.execute(
                text(
                    "INSERT INTO users (org_id, id, external_id, display_name, email, state, "
                    "create_time, update_time) VALUES (:o, :i, 'x', '', '', 'ACTIVE', now(), now())"
                ),
                {"o": org_b, "i": new_id()},
            )
        await s.execute(text("ROLLBACK TO SAVEPOINT probe"))
        # And an unfiltered UPDATE cannot reach B's row.
        result = await s.execute(text("UPDATE users SET display_name = 'pwned'"))
        assert result.rowcount == 1
    async with db.org_tx(scope(org_b)) as tx:
        row = await tx.users.get(user_b)
        assert row is not None and row.display_name == ""


@pytest.mark.postgres_only
async def test_runtime_role_is_not_owner_and_cannot_bypass(db: Database) -> None:
    if not db.is_postgres:
        pytest.skip("row-level security is a PostgreSQL feature")
    async with db.platform_tx() as tx:
        s = tx._session
        role = (await s.execute(text("SELECT current_user"))).scalar()
        bypass = (
            await s.execute(
                text("SELECT rolbypassrls OR rolsuper FROM pg_roles WHERE rolname = current_user")
            )
        ).scalar()
        owners = (
            (
                await s.execute(
                    text("SELECT DISTINCT tableowner FROM pg_tables WHERE tablename = ANY(:t)"),
                    {"t": list(TENANT_TABLES)},
                )
            )
            .scalars()
            .all()
        )
        forced = (
            await s.execute(
                text(
                    "SELECT bool_and(relforcerowsecurity AND relrowsecurity) FROM pg_class "
                    "WHERE relname = ANY(:t)"
                ),
                {"t": list(TENANT_TABLES)},
            )
        ).scalar()
    assert role == "agentauth_app" and bypass is False
    assert role not in owners
    assert forced is True


async def test_ids_are_random_not_sequential() -> None:
    ids = [new_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert ids != sorted(ids)
    assert all(len(i) == 32 and i[12] == "4" for i in ids)  # UUIDv4
