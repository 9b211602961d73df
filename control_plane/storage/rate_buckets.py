"""Shared token buckets: one atomic statement leases a batch of tokens.

A lease is a single ``INSERT … ON CONFLICT DO UPDATE … RETURNING`` (PostgreSQL,
and SQLite ≥ 3.35). The row is created full on first use; otherwise the SET
expressions refill the bucket from the time elapsed since ``updated_at``, cap it
at the burst, take ``min(want, whole tokens)`` and record what they took in
``leased``, all computed from the row as it is when the statement locks it:

* PostgreSQL: the conflicting row is locked and the SET list is evaluated on
  its latest committed version ("ON CONFLICT DO UPDATE guarantees an atomic
  INSERT or UPDATE outcome"), so concurrent leases from any number of
  connections or replicas serialize on the row and never hand out a token twice.
* SQLite: one writer at a time; the statement is its own critical section.

Time is integer microseconds (``EpochMicros``): exact, and the same SQL on both
databases. The bucket's clock only moves forward (``updated_at`` becomes
``max(updated_at, now)``), so a replica whose clock lags adds no refill and one
whose clock leads adds its lead once, not per lease.

Tenant buckets are leased inside ``Database.org_tx`` so that PostgreSQL's
row-level security applies; anonymous (per-peer) buckets are a platform table.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import TextClause, delete, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.domain.errors import StorageUnavailable
from control_plane.domain.rate_limit import EPSILON, Limit, seconds_until
from control_plane.domain.scope import OrgScope
from control_plane.storage.models import AnonymousRateBucket, RateBucket
from control_plane.storage.types import from_epoch_micros, to_epoch_micros

if TYPE_CHECKING:
    from control_plane.storage.db import Database

_TENANT = RateBucket.__tablename__
_ANONYMOUS = AnonymousRateBucket.__tablename__


@dataclass(frozen=True, slots=True)
class Lease:
    """What one lease took, and the shared bucket right after it."""

    granted: int
    tokens: float  # left in the shared bucket
    at: dt.datetime  # the bucket's clock: max(its previous updated_at, our now)

    def available_at(self, needed: float, limit: Limit) -> dt.datetime:
        """When the shared bucket will hold ``needed`` tokens, if nobody else takes any."""
        return self.at + dt.timedelta(seconds=seconds_until(self.tokens, needed, limit))

    def next_token_at(self, limit: Limit) -> dt.datetime:
        return self.available_at(1, limit)


@dataclass(frozen=True, slots=True)
class OrgOverrides:
    """An org's rate-limit columns; None: the deployment's default."""

    rate_limit_rps: float | None = None
    rate_limit_burst: int | None = None
    principal_rate_limit_rps: float | None = None
    principal_rate_limit_burst: int | None = None


async def lease(
    db: Database,
    scope: OrgScope,
    key: str,
    limit: Limit,
    want: int,
    now: dt.datetime,
    *,
    refund: int = 0,
) -> Lease:
    """Take up to ``want`` tokens from ``org_id``'s bucket ``key`` (org-scoped).

    ``refund`` hands back tokens an earlier lease took and never spent (they
    go in before the cap, so a full bucket stays full).
    """
    try:
        async with db.org_tx(scope) as tx:
            return await tx.rate_buckets.lease(key, limit, want, now, refund)
    except DBAPIError as exc:  # e.g. a read-only standby after a failover
        raise StorageUnavailable(debug=type(exc.orig).__name__) from None


async def lease_anonymous(
    db: Database, key: str, limit: Limit, want: int, now: dt.datetime, *, refund: int = 0
) -> Lease:
    """The same for a caller no org is known for yet (platform table)."""
    try:
        async with db.platform_tx() as tx:
            return await tx.anonymous_rate_buckets.lease(key, limit, want, now, refund)
    except DBAPIError as exc:
        raise StorageUnavailable(debug=type(exc.orig).__name__) from None


async def prune_anonymous(db: Database, idle_before: dt.datetime) -> int:
    """Delete anonymous buckets untouched since ``idle_before``; how many went.

    A bucket idle for longer than ``burst / rate`` is full again, which is
    exactly what a missing row means, so pruning those loses nothing.
    """
    async with db.platform_tx() as tx:
        return await tx.anonymous_rate_buckets.prune(idle_before)


async def org_overrides(db: Database, scope: OrgScope) -> OrgOverrides | None:
    """The org's rate-limit override columns, or None when there is no such org."""
    try:
        async with db.org_tx(scope) as tx:
            org = await tx.org()
    except DBAPIError as exc:
        raise StorageUnavailable(debug=type(exc.orig).__name__) from None
    if org is None:
        return None
    return OrgOverrides(
        org.rate_limit_rps,
        org.rate_limit_burst,
        org.principal_rate_limit_rps,
        org.principal_rate_limit_burst,
    )


class RateBuckets:
    """One org's buckets (an OrgTx's ``rate_buckets``)."""

    def __init__(self, session: AsyncSession, org_id: str, dialect: str) -> None:
        self._s = session
        self.org_id = org_id
        self._dialect = dialect

    async def lease(
        self, key: str, limit: Limit, want: int, now: dt.datetime, refund: int = 0
    ) -> Lease:
        return await _lease(
            self._s, self._dialect, _TENANT, {"org_id": self.org_id}, key, limit, want, now, refund
        )


class AnonymousRateBuckets:
    """Buckets of callers no org is known for yet (a PlatformTx's)."""

    def __init__(self, session: AsyncSession, dialect: str) -> None:
        self._s = session
        self._dialect = dialect

    async def lease(
        self, key: str, limit: Limit, want: int, now: dt.datetime, refund: int = 0
    ) -> Lease:
        return await _lease(self._s, self._dialect, _ANONYMOUS, {}, key, limit, want, now, refund)

    async def prune(self, idle_before: dt.datetime) -> int:
        result: Any = await self._s.execute(
            delete(AnonymousRateBucket).where(AnonymousRateBucket.updated_at < idle_before)
        )
        return int(result.rowcount or 0)


# ------------------------------------------------------------------ the statement

# One spelling per database: LEAST/GREATEST/floor on PostgreSQL; SQLite's
# multi-argument min()/max(), and CAST (truncation, = floor for x >= 0) since
# floor() needs SQLite's optional math functions. PostgreSQL's CAST would round.
_DIALECT = {
    "postgresql": ("LEAST", "GREATEST", "floor({})"),
    "sqlite": ("min", "max", "CAST({} AS INTEGER)"),
}


@functools.cache
def _statement(dialect: str, table: str, scope: tuple[str, ...]) -> TextClause:
    least, greatest, floor = _DIALECT[dialect]
    refilled = (
        f"{least}(:burst, b.tokens + :refund + {greatest}(0, :now - b.updated_at) * :rate_per_us)"
    )
    granted = f"{least}(:want, {floor.format(f'{refilled} + :epsilon')})"
    columns = ", ".join((*scope, "bucket_key", "tokens", "leased", "updated_at"))
    params = (*scope, "key", "fresh_tokens", "fresh_leased", "now")
    values = ", ".join(f":{name}" for name in params)
    # Every right-hand side of SET reads the row as it was before this statement.
    # Only constants are interpolated (our table and column names, the dialect's
    # function names); every value is a bound parameter.
    return text(
        f"INSERT INTO {table} AS b ({columns}) VALUES ({values}) "  # noqa: S608
        f"ON CONFLICT ({', '.join((*scope, 'bucket_key'))}) DO UPDATE SET "
        f"tokens = {refilled} - {granted}, "
        f"leased = {granted}, "
        f"updated_at = {greatest}(b.updated_at, :now) "
        "RETURNING leased, tokens, updated_at"
    )


async def _lease(
    s: AsyncSession,
    dialect: str,
    table: str,
    scope: dict[str, str],
    key: str,
    limit: Limit,
    want: int,
    now: dt.datetime,
    refund: int,
) -> Lease:
    if limit.unlimited:
        raise ValueError("an unlimited bucket needs no lease")
    if want < 0 or refund < 0:
        raise ValueError("want and refund must not be negative")
    first = min(want, limit.burst)  # a new bucket starts full
    params: dict[str, Any] = {
        **scope,
        "key": key,
        "fresh_tokens": float(limit.burst - first),
        "fresh_leased": first,
        "now": to_epoch_micros(now),
        "burst": float(limit.burst),
        "refund": float(refund),
        # Tokens per microsecond, times an exact integer count of microseconds.
        "rate_per_us": limit.rate_per_second / 1_000_000,
        "want": want,
        "epsilon": EPSILON,
    }
    stmt = _statement(dialect, table, tuple(scope))
    row = (await s.execute(stmt, params)).one()
    return Lease(granted=int(row[0]), tokens=float(row[1]), at=from_epoch_micros(int(row[2])))
