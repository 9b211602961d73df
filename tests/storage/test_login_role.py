"""Least privilege at the database: the runtime's login role can only become
``agentauth_app``; ``serve`` reports a login role that is a superuser or the owner."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest
from sqlalchemy import text

from control_plane.storage.db import Database
from tests.conftest import _pg_conninfo


def _pg(pg_server: Any) -> Any:
    if pg_server is None:
        pytest.skip("needs PostgreSQL")
    return pg_server


async def test_the_superuser_login_is_reported_as_privileged(pg_server: Any) -> None:
    db = Database(_pg(pg_server).url)
    try:
        login, superuser, owner = await db.login_privileges()
    finally:
        await db.dispose()
    assert superuser and owner and login


async def test_a_runtime_role_that_can_only_become_agentauth_app_is_not(pg_server: Any) -> None:
    server = _pg(pg_server)
    role = f"agentauth_rt_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(_pg_conninfo(server.url), autocommit=True) as conn:
        # NOINHERIT: nothing of agentauth_app's until it SETs ROLE; RESET ROLE = nothing.
        conn.execute(f'CREATE ROLE "{role}" LOGIN NOINHERIT')
        conn.execute(f'GRANT agentauth_app TO "{role}"')
    url = server.url.replace("postgres@", f"{role}@", 1)
    assert role in url
    db = Database(url)
    try:
        assert await db.login_privileges() == (role, False, False)
        # The runtime works through it (it SETs ROLE agentauth_app on connect) ...
        async with db.platform_tx() as tx:
            assert await tx.orgs.ids() is not None
        # ... and a RESET ROLE leaves a role that can read nothing.
        async with db.engine.connect() as conn:
            await conn.execute(text("RESET ROLE"))
            with pytest.raises(Exception, match="permission denied"):
                await conn.execute(text("SELECT count(*) FROM organizations"))
    finally:
        await db.dispose()
        with psycopg.connect(_pg_conninfo(server.url), autocommit=True) as conn:
            conn.execute(f'DROP OWNED BY "{role}"')
            conn.execute(f'DROP ROLE "{role}"')
