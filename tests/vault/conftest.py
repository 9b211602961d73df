"""Fixtures for the vault tests: a KEK on disk, an initialized barrier, orgs with keys."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from control_plane.clock import FakeClock
from control_plane.domain.scope import OrgScope
from control_plane.ids import new_id
from control_plane.storage.db import Database
from control_plane.storage.models import Organization
from control_plane.vault.barrier import Barrier
from control_plane.vault.fakes import FaultyKek
from control_plane.vault.kek import FileKekProvider
from tests.scopes import scope

MakeOrg = Callable[[Barrier], Awaitable[OrgScope]]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def kek_path(tmp_path: Path) -> Path:
    return tmp_path / "kek" / "keyring.json"


@pytest.fixture
def file_kek(kek_path: Path) -> FileKekProvider:
    return FileKekProvider.create(kek_path)


@pytest.fixture
def kek(file_kek: FileKekProvider) -> FaultyKek:
    """The real file provider behind a fault-injecting, call-counting wrapper."""
    return FaultyKek(file_kek)


@pytest.fixture
async def barrier(db: Database, kek: FaultyKek, clock: FakeClock) -> Barrier:
    b = Barrier(db, kek, clock=clock)
    await b.initialize(allow_create=True)
    return b


@pytest.fixture
def make_org(db: Database) -> MakeOrg:
    """``await make_org(barrier)``: insert an organization row, then its DEK v1.

    Two transactions, as the org service will do it on PostgreSQL: the
    organization is a platform row; its DEK is a tenant row written in the
    org's own transaction so that row-level security's WITH CHECK passes.
    """

    async def _make(barrier: Barrier) -> OrgScope:
        org_id = new_id()
        now = FakeClock().now()
        async with db.platform_tx() as tx:
            await tx.orgs.add(
                Organization(
                    id=org_id,
                    display_name=f"org {org_id[:6]}",
                    state="ACTIVE",
                    create_time=now,
                    update_time=now,
                )
            )
        org = scope(org_id)
        async with db.org_tx(org) as tx:
            await barrier.create_org_key(tx, org)
        return org

    return _make
