"""What ``RateLimiter.check()`` costs per call, against a no-op baseline, in one run.

Measures, in one process on the real clock, tight loops of awaits of:

* a no-op coroutine with ``check``'s signature (the baseline);
* ``check()`` for a hot, allowed authenticated key (org + principal bucket),
  limits high enough that every call is admitted: batches are then 1000 (the
  cap), leased from the database as the loop spends them;
* the same for an anonymous caller (one peer bucket);
* ``check()`` for an exhausted key: every call refused from memory;
* one lease on its own (``org_tx`` + the upsert), from which the per-call
  share of leasing at the *default* limits' batch sizes is derived (org 50,
  principal 10: at those limits a tight loop would be refused, not admitted).

Wall time and this process's CPU time are both shown: on a shared machine wall
time includes time given to other processes. It runs on embedded SQLite and,
when reachable, on PostgreSQL (a throwaway database). It reports; it does not gate.

    .venv/bin/python -m bench.rate_limiter_overhead [--seconds 3] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import event

from control_plane.clock import SystemClock
from control_plane.domain.errors import ResourceExhausted
from control_plane.domain.rate_limit import Limit, RateLimitDefaults, lease_batch
from control_plane.domain.scope import OrgScope
from control_plane.ids import new_id
from control_plane.services.rate_limiter import RateLimiter
from control_plane.storage import rate_buckets
from control_plane.storage.db import Database
from control_plane.storage.migrate import upgrade
from control_plane.storage.models import Organization

HIGH = Limit(10_000_000, 10_000_000)  # above anything one loop reaches: always admitted


async def _measure(call: Callable[[], Awaitable[object]], seconds: float) -> tuple[float, float]:
    """(calls per second of wall time, µs of this process's CPU per call), after a warm-up."""
    for _ in range(2000):
        await call()
    count, start, cpu = 0, time.perf_counter(), time.process_time()
    stop = start + seconds
    while True:
        for _ in range(1000):
            await call()
        count += 1000
        now = time.perf_counter()
        if now >= stop:
            return count / (now - start), (time.process_time() - cpu) / count * 1e6


async def _bench(url: str, label: str, seconds: float) -> None:
    await upgrade(url)
    db = Database(url)
    leases = 0

    def count(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        nonlocal leases
        leases += statement.startswith("INSERT") and "rate_buckets" in statement

    event.listen(db.engine.sync_engine, "before_cursor_execute", count)
    clock = SystemClock()
    org_id = new_id()
    org = OrgScope.for_platform_job(org_id, job="bench")
    async with db.platform_tx() as tx:
        now = clock.now()
        await tx.orgs.add(
            Organization(
                id=org_id,
                display_name="b",
                state="ACTIVE",
                create_time=now,
                update_time=now,
                access_token_ttl_seconds=300,
            )
        )
    rl = RateLimiter(db, clock, RateLimitDefaults(org=HIGH, principal=HIGH, anonymous=HIGH))
    exhausted = RateLimiter(db, clock, RateLimitDefaults(principal=Limit(0.001, 1)))

    async def noop(scope: OrgScope | None, principal_key: str, peer: str | None) -> None:
        return None

    async def refused() -> None:
        try:
            await exhausted.check(org, "users/exhausted", None)
        except ResourceExhausted:
            pass

    async def one_lease() -> None:
        await rate_buckets.lease(db, org, "bench", HIGH, 1, clock.now())

    for _ in range(3):
        await refused()  # the bucket's one token goes; from now on every call is refused
    try:
        base = await _measure(lambda: noop(org, "users/bench", None), seconds)
        before = leases
        authed = await _measure(lambda: rl.check(org, "users/bench", None), seconds)
        authed_leases = leases - before
        anon = await _measure(lambda: rl.check(None, "", "ipv4:192.0.2.7:50000"), seconds)
        before = leases
        denied = await _measure(refused, seconds)
        denied_leases = leases - before
        lease_rate, lease_cpu = await _measure(one_lease, seconds / 3)
    finally:
        await rl.close()
        await exhausted.close()
        await db.dispose()

    def row(name: str, cell: tuple[float, float], note: str = "") -> None:
        qps, cpu = cell
        over = (1 / qps - 1 / base[0]) * 1e6
        print(f"  {name:<36} {qps:>10,.0f}/s {over:>7.2f} µs {cpu:>8.2f} µs  {note}")

    d = RateLimitDefaults()
    org_batch, principal_batch = lease_batch(d.org), lease_batch(d.principal)
    share = lease_cpu * (1 / org_batch + 1 / principal_batch)
    print(f"{label}: {seconds:.0f}s per cell, one coroutine, real clock")
    print(f"  {'':<36} {'calls':>12} {'wall over':>10} {'CPU/call':>11}")
    print(f"  {'no-op coroutine (baseline)':<36} {base[0]:>10,.0f}/s {'':>10} {base[1]:>8.2f} µs")
    row("check(): org + principal, allowed", authed, f"{authed_leases} leases of 1000")
    row("check(): anonymous peer, allowed", anon)
    row("check(): exhausted key, refused", denied, f"{denied_leases} database statements")
    print(
        f"  one lease (org_tx + upsert): {1e3 / lease_rate:.2f} ms wall, "
        f"{lease_cpu / 1e3:.2f} ms CPU; at the default limits' batches "
        f"(org {org_batch}, principal {principal_batch}) leasing adds ~{share:.0f} µs CPU "
        "per admitted call"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument(
        "--database-url",
        default=os.environ.get(
            "AGENTAUTH_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="a PostgreSQL admin connection; a throwaway database is created next to it",
    )
    args = ap.parse_args()
    print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(_bench(f"sqlite+aiosqlite:///{tmp}/bench.db", "SQLite", args.seconds))
    try:
        import psycopg

        admin = args.database_url.replace("postgresql+psycopg://", "postgresql://")
        name = f"agentauth_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(admin, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except Exception as exc:
        print(f"PostgreSQL: skipped ({type(exc).__name__})")
        return
    try:
        url = admin.rsplit("/", 1)[0] + "/" + name
        asyncio.run(_bench(url, "PostgreSQL", args.seconds))
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
