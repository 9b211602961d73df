"""The rate limiter on real databases (SQLite and PostgreSQL), on an injected clock."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy.exc
from sqlalchemy import event, update

from control_plane.clock import FakeClock
from control_plane.domain.errors import ResourceExhausted, Unavailable
from control_plane.domain.rate_limit import (
    UNLIMITED,
    Limit,
    OrgLimits,
    RateLimitDefaults,
    lease_batch,
)
from control_plane.ids import new_id
from control_plane.services.rate_limiter import RateLimiter, organization_limits
from control_plane.storage.db import Database
from control_plane.storage.models import Organization, RateBucket
from control_plane.domain.scope import OrgScope
from tests.scopes import add_org, org_session, platform_session, scope

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
ROOMY = Limit(10_000, 10_000)


def defaults(
    org: Limit = ROOMY, principal: Limit = ROOMY, anonymous: Limit = ROOMY
) -> RateLimitDefaults:
    return RateLimitDefaults(org=org, principal=principal, anonymous=anonymous)


def limiter(db: Database, clock: FakeClock, d: RateLimitDefaults, **kw: Any) -> RateLimiter:
    kw.setdefault("lease_timeout", 30.0)  # a slow CI machine must not look like an outage
    return RateLimiter(db, clock, d, **kw)


async def _org(db: Database) -> OrgScope:
    return scope(await add_org(db, new_id(), NOW))


def statements(db: Database) -> list[str]:
    """Every statement the database object sends from now on."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    event.listen(db.engine.sync_engine, "before_cursor_execute", record)
    return seen


def leases(seen: list[str]) -> int:
    return sum("rate_buckets" in s and s.startswith("INSERT") for s in seen)


async def refused(call: Any) -> ResourceExhausted:
    with pytest.raises(ResourceExhausted) as err:
        await call
    assert (err.value.code, err.value.reason) == ("RESOURCE_EXHAUSTED", "RATE_LIMITED")
    return err.value


# ------------------------------------------------------------------ limits and hints

HINTS = [
    # rate, burst, calls admitted at once, seconds until the next is admitted, hint
    (0.2, 3, 3, 5.0, 5),
    (0.1, 1, 1, 10.0, 10),
    (0.5, 2, 2, 2.0, 2),
    (1.0, 5, 5, 1.0, 1),
    (50.0, 10, 10, 0.1, 1),  # batches of 5: the row must hold a whole batch again
]


@pytest.mark.parametrize(("rate", "burst", "admitted", "wait", "hint"), HINTS)
async def test_a_burst_over_the_limit_is_refused_with_the_retry_hint_then_admitted_again(
    db: Database, rate: float, burst: int, admitted: int, wait: float, hint: int
) -> None:
    org, clock = await _org(db), FakeClock(NOW)
    rl = limiter(db, clock, defaults(principal=Limit(rate, burst)))
    for _ in range(admitted):
        await rl.check(org, "users/alice", None)
    err = await refused(rl.check(org, "users/alice", None))
    assert err.metadata == {"retryAfterSeconds": str(hint)}
    clock.advance(wait * 0.99)
    await refused(rl.check(org, "users/alice", None))
    clock.advance(wait * 0.01)
    await rl.check(org, "users/alice", None)


async def test_the_org_limit_is_shared_by_its_principals(db: Database) -> None:
    org, clock = await _org(db), FakeClock(NOW)
    rl = limiter(db, clock, defaults(org=Limit(0.5, 4)))
    for i in range(4):
        await rl.check(org, f"users/u{i}", None)
    err = await refused(rl.check(org, "users/u9", None))
    assert err.retry_after_seconds == 2


async def test_other_orgs_and_other_principals_are_unaffected(db: Database) -> None:
    org_a, org_b, clock = await _org(db), await _org(db), FakeClock(NOW)
    rl = limiter(db, clock, defaults(org=Limit(1, 10), principal=Limit(1, 3)))
    for _ in range(3):
        await rl.check(org_a, "users/alice", None)
    await refused(rl.check(org_a, "users/alice", None))
    for _ in range(3):
        await rl.check(org_a, "users/bob", None)  # another principal of the same org
    for _ in range(4):
        await rl.check(org_a, f"users/x{_}", None)
    await refused(rl.check(org_a, "users/carol", None))  # now the org itself is empty
    for _ in range(3):
        await rl.check(org_b, "users/alice", None)  # the same principal id in another org


async def test_a_refusal_by_one_bucket_spends_nothing_from_the_other(db: Database) -> None:
    org, clock = await _org(db), FakeClock(NOW)
    rl = limiter(db, clock, defaults(org=Limit(0.001, 2), principal=Limit(0.001, 1)))
    await rl.check(org, "users/p1", None)  # org 1 left, p1 empty
    await refused(rl.check(org, "users/p1", None))  # refused by p1's bucket...
    await rl.check(org, "users/p2", None)  # ...so the org's last token is still there
    await refused(rl.check(org, "users/p3", None))


async def test_anonymous_callers_are_limited_per_address_and_ipv6_per_64(db: Database) -> None:
    clock = FakeClock(NOW)
    rl = limiter(db, clock, defaults(anonymous=Limit(0.001, 2)))
    await rl.check(None, "", "ipv6:[2001:db8:0:1::1]:443")
    await rl.check(None, "", "ipv6:[2001:db8:0:1::2]:443")  # same /64
    await refused(rl.check(None, "", "2001:db8:0:1:ffff::9"))
    await rl.check(None, "", "ipv6:[2001:db8:0:2::1]:443")  # another /64
    await rl.check(None, "", "ipv4:192.0.2.1:5000")
    await rl.check(None, "", "192.0.2.1")
    await refused(rl.check(None, "", "ipv4:192.0.2.1:6000"))


async def test_per_org_overrides_from_limits_for_apply(db: Database) -> None:
    small, big, clock = await _org(db), await _org(db), FakeClock(NOW)
    asked: list[OrgScope] = []

    async def limits_for(org: OrgScope) -> OrgLimits:
        asked.append(org)
        if org == small:
            return OrgLimits(org=Limit(0.25, 2), principal=ROOMY)
        return OrgLimits(org=UNLIMITED, principal=UNLIMITED)

    seen = statements(db)
    rl = limiter(db, clock, defaults(org=Limit(1, 1)), limits_for=limits_for)
    for _ in range(2):
        await rl.check(small, "users/a", None)
    assert (await refused(rl.check(small, "users/a", None))).retry_after_seconds == 4
    before = leases(seen)
    for _ in range(500):
        await rl.check(big, "users/a", None)  # unlimited: never leased at all
    assert leases(seen) == before
    assert asked.count(small) == 1 and asked.count(big) == 1  # cached, not asked per call


async def test_overrides_stored_on_the_organization_apply(db: Database) -> None:
    org, other, clock = await _org(db), await _org(db), FakeClock(NOW)
    async with platform_session(db) as s:
        await s.execute(
            update(Organization)
            .where(Organization.id == org.org_id)
            .values(rate_limit_rps=0.5, rate_limit_burst=3, principal_rate_limit_burst=2)
        )
    d = defaults(org=Limit(100, 100), principal=Limit(0.25, 100))
    rl = limiter(db, clock, d, limits_for=organization_limits(db, d))
    await rl.check(org, "users/a", None)
    await rl.check(org, "users/a", None)
    # The principal's burst is overridden (2), its rate is the default (0.25/s).
    assert (await refused(rl.check(org, "users/a", None))).retry_after_seconds == 4
    await rl.check(org, "users/b", None)
    assert (await refused(rl.check(org, "users/c", None))).retry_after_seconds == 2
    for _ in range(5):
        await rl.check(other, "users/a", None)  # no overrides: the defaults


async def test_a_changed_limit_applies_within_limits_ttl_plus_lease_ttl(db: Database) -> None:
    org, clock = await _org(db), FakeClock(NOW)
    current = {"limit": Limit(0.01, 1)}

    async def limits_for(_org: str) -> OrgLimits:
        return OrgLimits(org=current["limit"], principal=ROOMY)

    rl = limiter(db, clock, defaults(), limits_for=limits_for, limits_ttl=10, lease_ttl=1)
    await rl.check(org, "users/a", None)
    assert (await refused(rl.check(org, "users/a", None))).retry_after_seconds == 100
    current["limit"] = Limit(1000, 1000)
    clock.advance(5)
    await refused(rl.check(org, "users/a", None))  # still cached
    clock.advance(6)  # past limits_ttl + lease_ttl
    for _ in range(200):
        await rl.check(org, "users/a", None)


# ------------------------------------------------------------------ cost

async def test_denials_after_exhaustion_do_not_touch_the_database(db: Database) -> None:
    org, clock = await _org(db), FakeClock(NOW)
    rl = limiter(db, clock, defaults(org=Limit(10, 20), principal=ROOMY, anonymous=Limit(1, 2)))
    seen = statements(db)
    admitted = 0
    for _ in range(40):
        try:
            await rl.check(org, "users/a", None)
            admitted += 1
        except ResourceExhausted:
            break
    assert admitted == 20
    for _ in range(2):
        await rl.check(None, "", "198.51.100.7")
    await refused(rl.check(None, "", "198.51.100.7"))
    before = len(seen)
    for _ in range(2000):
        await refused(rl.check(org, "users/a", None))
        await refused(rl.check(None, "", "198.51.100.7"))
    assert len(seen) == before


async def test_allowed_calls_lease_once_per_batch(db: Database) -> None:
    org, clock = await _org(db), FakeClock(NOW)
    d = defaults(org=Limit(500, 1000), principal=Limit(100, 200))
    rl = limiter(db, clock, d)
    seen = statements(db)
    for _ in range(100):
        await rl.check(org, "users/a", None)
    # 100 calls: 2 org batches of 50, 10 principal batches of 10.
    assert lease_batch(d.org) == 50 and lease_batch(d.principal) == 10
    assert leases(seen) == 100 // 50 + 100 // 10


async def test_concurrent_callers_for_one_key_share_one_lease(db: Database) -> None:
    org, clock = await _org(db), FakeClock(NOW)
    rl = limiter(db, clock, defaults(org=Limit(100, 100), principal=Limit(100, 100)))
    seen = statements(db)
    await asyncio.gather(*(rl.check(org, "users/a", None) for _ in range(10)))
    assert leases(seen) == 2  # one for the org's bucket, one for the principal's; not 20
    await asyncio.gather(*(rl.check(None, "", "203.0.113.5") for _ in range(10)))
    assert leases(seen) == 3


async def test_local_buckets_are_bounded(db: Database) -> None:
    clock = FakeClock(NOW)
    rl = limiter(db, clock, defaults(), max_buckets=3)
    for i in range(10):
        await rl.check(None, "", f"192.0.2.{i}")
    assert len(rl._buckets) == 3


async def test_unspent_tokens_expire_and_go_back_with_the_next_lease(db: Database) -> None:
    org, clock = await _org(db), FakeClock(NOW)
    # Batches of 10 (fraction 10 × 1/s); the lease lives one second.
    d = defaults(org=Limit(1, 20), principal=UNLIMITED)
    rl = limiter(db, clock, d, batch_fraction=10, lease_ttl=1)
    for _ in range(11):
        await rl.check(org, "users/a", None)  # two leases of 10: the row is empty, 9 held
    clock.advance(2)  # the 9 held tokens expire; the row refills 2
    seen = statements(db)
    await rl.check(org, "users/a", None)
    assert leases(seen) == 1  # expired tokens are not spent: a new lease
    async with org_session(db, org.org_id) as s:
        row = await s.get(RateBucket, (org.org_id, "org"))
    assert row is not None and row.tokens == pytest.approx(1.0)  # 2 + 9 back, 10 taken


# ------------------------------------------------------------------ replicas

RATE, BURST, LEASE_TTL = 200.0, 50, 1.0
STEPS = 60


async def _hammer(
    database_url: str, seed: int, advances: list[float], demand: tuple[tuple[int, int], ...]
) -> tuple[list[float], list[int], int]:
    """Two limiters, each with its own Database object (two pools, like two processes),
    call for one org concurrently, in shuffled order, on irregular steps of a shared
    clock. Returns the time of each step, the calls admitted at it, and the batch."""
    rng = random.Random(seed)
    clock = FakeClock(NOW)
    dbs = [Database(database_url), Database(database_url)]
    d = defaults(org=Limit(RATE, BURST), principal=UNLIMITED)
    replicas = [limiter(db, clock, d, lease_ttl=LEASE_TTL) for db in dbs]
    times: list[float] = []
    admitted: list[int] = []
    try:
        org = await _org(dbs[0])
        elapsed = 0.0
        for i in range(STEPS + 1):
            if i:
                advance = rng.choice(advances)
                clock.advance(dt.timedelta(microseconds=round(advance * 1e6)))
                elapsed += advance
            calls = [
                r.check(org, f"users/u{j}", None)
                for r, (low, high) in zip(replicas, demand, strict=True)
                for j in range(rng.randint(low, high))
            ]
            rng.shuffle(calls)
            results = await asyncio.gather(*calls, return_exceptions=True)
            assert all(r is None or isinstance(r, ResourceExhausted) for r in results), results
            times.append(elapsed)
            admitted.append(sum(r is None for r in results))
    finally:
        for r in replicas:
            await r.close()
        for db in dbs:
            await db.dispose()
    return times, admitted, lease_batch(d.org)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_two_replicas_under_saturating_demand_admit_the_budget_within_n_batches(
    database_url: str, seed: int
) -> None:
    """Demand above supply at every step (one replica far busier than the other), and
    steps short enough that the row never fills up (B + rate × step < burst: nothing
    is lost to the cap). At every step, since the start: no more than
    ``burst + rate × t``, no fewer than that minus N × B (the module's bounds)."""
    times, admitted, batch = await _hammer(
        database_url, seed, [0.001, 0.013, 0.037, 0.05, 0.08, 0.11], ((60, 100), (0, 8))
    )
    assert batch + RATE * 0.11 < BURST
    total = 0
    for t, n in zip(times, admitted, strict=True):
        total += n
        budget = BURST + RATE * t
        assert total <= budget + 1e-6, t
        assert total >= budget - 2 * batch, t


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_two_replicas_under_bursty_demand_stay_within_every_window_bound(
    database_url: str, seed: int
) -> None:
    """Demand comes and goes, so buckets fill up between bursts. Cumulatively no more
    than ``burst + rate × t``; in every window W no more than
    ``burst + rate × W + min(N × B, rate × L)`` (leases taken before the window)."""
    times, admitted, batch = await _hammer(
        database_url, seed, [0.001, 0.013, 0.037, 0.05, 0.11, 0.3, 1.5], ((0, 40), (0, 8))
    )
    held = min(2 * batch, RATE * LEASE_TTL)
    for b in range(len(admitted)):
        assert sum(admitted[: b + 1]) <= BURST + RATE * times[b] + 1e-6
        for a in range(b + 1):
            window = sum(admitted[a : b + 1])
            assert window <= BURST + RATE * (times[b] - times[a]) + held + 1e-6, (a, b)


# ------------------------------------------------------------------ the database away

class FlakyDatabase(Database):
    """The real database with fault injection: down (fails at once) or hung."""

    down = False
    error: Exception | None = None
    hang: asyncio.Event | None = None

    @contextlib.asynccontextmanager
    async def _tx(self) -> AsyncIterator[Any]:
        if self.down:
            raise Unavailable(debug="injected")
        if self.error is not None:
            raise self.error
        if self.hang is not None:
            await self.hang.wait()
        async with super()._tx() as s:
            yield s


async def test_an_unreachable_database_fails_open_to_per_replica_limits(
    database_url: str,
) -> None:
    dead: Database
    if database_url.startswith("postgresql"):
        dead = Database("postgresql+psycopg://postgres@127.0.0.1:1/nowhere")  # refused
    else:
        # Injected on the real file: a file that cannot be opened would leave
        # aiosqlite's worker thread reporting its failed connect after the
        # test's event loop is closed.
        dead = FlakyDatabase(database_url)
        dead.down = True
    clock = FakeClock(NOW)
    rl = limiter(dead, clock, defaults(org=Limit(1, 3), principal=ROOMY, anonymous=Limit(1, 2)))
    org = scope(new_id())
    try:
        for _ in range(3):
            await rl.check(org, "users/a", None)  # admitted by this replica's own bucket
        assert (await refused(rl.check(org, "users/a", None))).retry_after_seconds == 1
        clock.advance(1)
        await rl.check(org, "users/a", None)  # ...which refills at the same rate
        for _ in range(2):
            await rl.check(None, "", "192.0.2.1")
        await refused(rl.check(None, "", "192.0.2.1"))
    finally:
        await rl.close()
        await dead.dispose()


async def test_shared_accounting_resumes_when_the_database_is_back(database_url: str) -> None:
    db = FlakyDatabase(database_url)
    clock = FakeClock(NOW)
    rl = limiter(db, clock, defaults(org=Limit(1, 5)), retry_interval=5, lease_ttl=1)
    try:
        org = await _org(db)
        seen = statements(db)
        await rl.check(org, "users/a", None)
        assert leases(seen) == 2
        db.down = True
        clock.advance(2)  # the leased tokens expire
        for _ in range(5):
            await rl.check(org, "users/a", None)  # the local bucket, full
        await refused(rl.check(org, "users/a", None))
        db.down = False
        clock.advance(2)
        await rl.check(org, "users/a", None)  # still within retry_interval: local
        count = leases(seen)
        clock.advance(4)  # retry_interval has passed: the next lease probes, and works
        await rl.check(org, "users/a", None)
        assert leases(seen) > count
        async with org_session(db, org.org_id) as s:
            row = await s.get(RateBucket, (org.org_id, "org"))
        assert row is not None and row.updated_at == clock.now()
    finally:
        await rl.close()
        await db.dispose()


async def test_a_read_only_standby_fails_open_too(database_url: str) -> None:
    """After a failover onto a standby, writes fail with a database error that is not a
    lost connection; the limiter must not turn every call into INTERNAL."""
    db = FlakyDatabase(database_url)
    clock = FakeClock(NOW)
    rl = limiter(db, clock, defaults(principal=Limit(1, 2)))
    try:
        org = await _org(db)
        db.error = sqlalchemy.exc.InternalError(
            "INSERT INTO rate_buckets …", {}, Exception("cannot execute in a read-only transaction")
        )
        await rl.check(org, "users/a", None)
        await rl.check(org, "users/a", None)
        await refused(rl.check(org, "users/a", None))
    finally:
        await rl.close()
        await db.dispose()


async def test_a_hung_database_is_waited_for_at_most_lease_timeout(database_url: str) -> None:
    db = FlakyDatabase(database_url)
    clock = FakeClock(NOW)
    rl = RateLimiter(db, clock, defaults(principal=Limit(1, 2)), lease_timeout=0.05)
    try:
        org = await _org(db)
        db.hang = asyncio.Event()
        async with asyncio.timeout(10):  # a generous guard, not a timing assertion
            await rl.check(org, "users/a", None)
            await rl.check(org, "users/a", None)
            await refused(rl.check(org, "users/a", None))  # per-replica limit, not unlimited
        db.hang.set()
    finally:
        await rl.close(grace=30)  # the leases, released, finish before the database goes
        await db.dispose()
