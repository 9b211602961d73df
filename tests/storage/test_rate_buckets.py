"""Shared token buckets: one atomic lease statement, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from sqlalchemy import select, text, update

from control_plane.domain.rate_limit import Limit
from control_plane.ids import new_id
from control_plane.storage import rate_buckets
from control_plane.storage.db import Database
from control_plane.storage.models import AnonymousRateBucket, Organization, RateBucket
from control_plane.domain.scope import OrgScope
from tests.scopes import add_org, org_session, platform_session, scope

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def at(seconds: float) -> dt.datetime:
    return NOW + dt.timedelta(seconds=seconds)


async def _org(db: Database) -> OrgScope:
    return scope(await add_org(db, new_id(), NOW))


async def _row(db: Database, org: OrgScope, key: str) -> RateBucket | None:
    async with org_session(db, org.org_id) as s:
        return await s.get(RateBucket, (org.org_id, key))


async def test_first_lease_creates_a_full_bucket_and_takes_from_it(db: Database) -> None:
    org = await _org(db)
    lease = await rate_buckets.lease(db, org, "org", Limit(10, 100), 30, NOW)
    assert (lease.granted, lease.tokens, lease.at) == (30, 70.0, NOW)
    row = await _row(db, org, "org")
    assert row is not None and row.tokens == 70.0 and row.leased == 30 and row.updated_at == NOW


async def test_partial_then_empty_lease_says_when_the_next_token_appears(db: Database) -> None:
    org = await _org(db)
    limit = Limit(0.2, 3)  # one token every five seconds
    assert (await rate_buckets.lease(db, org, "org", limit, 2, NOW)).granted == 2
    partial = await rate_buckets.lease(db, org, "org", limit, 2, NOW)
    assert partial.granted == 1 and partial.tokens == 0.0
    empty = await rate_buckets.lease(db, org, "org", limit, 2, at(1))
    assert empty.granted == 0
    assert empty.tokens == pytest.approx(0.2)
    assert empty.next_token_at(limit) == at(5)
    assert empty.available_at(2, limit) == at(10)
    assert (await rate_buckets.lease(db, org, "org", limit, 2, at(5))).granted == 1


async def test_refill_is_capped_at_the_burst(db: Database) -> None:
    org = await _org(db)
    limit = Limit(100, 50)
    assert (await rate_buckets.lease(db, org, "org", limit, 50, NOW)).granted == 50
    lease = await rate_buckets.lease(db, org, "org", limit, 10, at(3600))
    assert (lease.granted, lease.tokens) == (10, 40.0)


async def test_refill_is_exact_over_many_small_steps(db: Database) -> None:
    """Integer microseconds: 1000 leases 1 ms apart refill exactly 1000 × rate × 1 ms."""
    org = await _org(db)
    limit = Limit(1000, 1000)
    await rate_buckets.lease(db, org, "org", limit, 1000, NOW)
    granted = 0
    for i in range(1, 201):
        granted += (await rate_buckets.lease(db, org, "org", limit, 5, at(i / 1000))).granted
    assert granted == 200  # one token per millisecond, none lost to rounding


async def test_a_lagging_clock_adds_nothing_and_never_moves_the_bucket_back(db: Database) -> None:
    org = await _org(db)
    limit = Limit(1, 10)
    await rate_buckets.lease(db, org, "org", limit, 10, at(10))  # a replica whose clock leads
    behind = await rate_buckets.lease(db, org, "org", limit, 10, at(5))  # one that lags
    assert behind.granted == 0 and behind.at == at(10)
    assert (await rate_buckets.lease(db, org, "org", limit, 10, at(12))).granted == 2


async def test_a_refund_goes_in_before_the_cap(db: Database) -> None:
    org = await _org(db)
    limit = Limit(1, 20)
    await rate_buckets.lease(db, org, "org", limit, 20, NOW)
    lease = await rate_buckets.lease(db, org, "org", limit, 0, at(2), refund=9)
    assert (lease.granted, lease.tokens) == (0, 11.0)
    capped = await rate_buckets.lease(db, org, "org", limit, 0, at(2), refund=100)
    assert capped.tokens == 20.0


async def test_concurrent_leases_from_two_pools_never_hand_out_a_token_twice(
    database_url: str,
) -> None:
    """Two Database objects are two pools, like two replicas; the row serializes them."""
    replicas = [Database(database_url), Database(database_url)]
    try:
        org = await _org(replicas[0])
        limit = Limit(0.001, 100)  # no refill worth a token during the test
        leases = await asyncio.gather(
            *(
                rate_buckets.lease(replicas[i % 2], org, "org", limit, 3, NOW)
                for i in range(60)
            )
        )
        assert sum(lease.granted for lease in leases) == 100
        assert all(0 <= lease.granted <= 3 for lease in leases)
        row = await _row(replicas[0], org, "org")
        assert row is not None and 0 <= row.tokens < 1
    finally:
        for db in replicas:
            await db.dispose()


async def test_buckets_are_per_org_and_per_key(db: Database) -> None:
    org_a, org_b = await _org(db), await _org(db)
    limit = Limit(0.001, 5)
    assert (await rate_buckets.lease(db, org_a, "org", limit, 5, NOW)).granted == 5
    assert (await rate_buckets.lease(db, org_a, "org", limit, 5, NOW)).granted == 0
    assert (await rate_buckets.lease(db, org_b, "org", limit, 5, NOW)).granted == 5
    assert (await rate_buckets.lease(db, org_a, "principal:p", limit, 5, NOW)).granted == 5
    assert (await rate_buckets.lease_anonymous(db, "peer:1.2.3.4", limit, 5, NOW)).granted == 5
    assert (await rate_buckets.lease_anonymous(db, "peer:1.2.3.4", limit, 5, NOW)).granted == 0


@pytest.mark.postgres_only
async def test_row_level_security_hides_other_orgs_buckets(db: Database) -> None:
    if not db.is_postgres:
        pytest.skip("row-level security is a PostgreSQL feature")
    org_a, org_b = await _org(db), await _org(db)
    await rate_buckets.lease(db, org_a, "org", Limit(1, 5), 1, NOW)
    async with org_session(db, org_b.org_id) as s:
        assert (await s.execute(select(RateBucket))).scalars().all() == []
        # An unfiltered write from B's transaction cannot reach A's bucket.
        assert (await s.execute(update(RateBucket).values(tokens=999))).rowcount == 0
    async with platform_session(db) as s:
        assert (await s.execute(text("SELECT count(*) FROM rate_buckets"))).scalar() == 0
    row = await _row(db, org_a, "org")
    assert row is not None and row.tokens == 4.0


async def test_deleting_the_org_deletes_its_buckets(db: Database) -> None:
    org = await _org(db)
    await rate_buckets.lease(db, org, "org", Limit(1, 5), 1, NOW)
    async with org_session(db, org.org_id) as s:  # the org's own transaction, as the service
        await s.execute(text("DELETE FROM organizations WHERE id = :id"), {"id": org.org_id})
    assert await _row(db, org, "org") is None


async def test_idle_anonymous_buckets_are_pruned(db: Database) -> None:
    limit = Limit(1, 5)
    await rate_buckets.lease_anonymous(db, "peer:old", limit, 1, NOW)
    await rate_buckets.lease_anonymous(db, "peer:new", limit, 1, at(100))
    assert await rate_buckets.prune_anonymous(db, at(50)) == 1
    async with platform_session(db) as s:
        keys = (await s.execute(select(AnonymousRateBucket.bucket_key))).scalars().all()
    assert keys == ["peer:new"]


async def test_org_overrides(db: Database) -> None:
    org = await _org(db)
    assert await rate_buckets.org_overrides(db, scope(new_id())) is None
    assert await rate_buckets.org_overrides(db, org) == rate_buckets.OrgOverrides()
    async with platform_session(db) as s:
        await s.execute(
            update(Organization)
            .where(Organization.id == org.org_id)
            .values(rate_limit_rps=2.5, principal_rate_limit_burst=7)
        )
    assert await rate_buckets.org_overrides(db, org) == rate_buckets.OrgOverrides(
        rate_limit_rps=2.5, principal_rate_limit_burst=7
    )


async def test_an_unlimited_bucket_is_never_leased(db: Database) -> None:
    org = await _org(db)
    with pytest.raises(ValueError):
        await rate_buckets.lease(db, org, "org", Limit(0, 1), 1, NOW)
