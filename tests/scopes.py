"""Test helpers for reaching storage directly (setup, and probing the walls).

Tests are outside the production boundary: they may open a raw session inside a
real org transaction to prove what a forgotten filter can and cannot see.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator

from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.domain.scope import OrgScope
from control_plane.ids import new_id
from control_plane.storage.db import Database
from control_plane.storage.models import Organization

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def scope(org_id: str) -> OrgScope:
    """A scope for ``org_id`` (tests act as a platform job)."""
    return OrgScope.for_platform_job(org_id, job="test")


async def add_org(db: Database, org_id: str | None = None, now: dt.datetime = NOW) -> str:
    """Insert a bare organization row (no data key, no service account)."""
    org_id = org_id or new_id()
    async with db.platform_tx() as tx:
        await tx.orgs.add(
            Organization(
                id=org_id,
                display_name=f"org {org_id[:6]}",
                state="ACTIVE",
                create_time=now,
                update_time=now,
                access_token_ttl_seconds=300,
            )
        )
    return org_id


@contextlib.asynccontextmanager
async def org_session(db: Database, org_id: str) -> AsyncIterator[AsyncSession]:
    """The raw session of a real org transaction (RLS setting / SQLite guard applied)."""
    async with db.org_tx(scope(org_id)) as tx:
        yield tx._session


@contextlib.asynccontextmanager
async def platform_session(db: Database) -> AsyncIterator[AsyncSession]:
    async with db.platform_tx() as tx:
        yield tx._session
