"""The request pipeline's rate limits: per org, per principal, per anonymous peer.

Design
======

Each limit is a token bucket (``domain.rate_limit``) whose authoritative state
is one database row (``storage.rate_buckets``). Replicas do not ask the row for
every call: they **lease** tokens from it in batches, with one atomic
statement, and spend them from memory. A call is admitted only by spending a
token that the shared row handed out, exactly once, to exactly one replica.

* Batch ``B`` = a tenth of a second at the full rate, at least 1, at most 1000
  and never above the burst (``lease_batch``). A busy key costs each replica
  about ten leases a second, whatever its rate.
* A lease lives ``lease_ttl`` (1 s). Tokens still unspent then are not spent
  late: they go back to the row with the replica's next lease of that key.
* When a lease comes back short, the replica refuses that key from memory
  until the row will hold a whole batch again, and says so in
  ``retryAfterSeconds``. Denials cost no I/O and no lookups (``check`` refuses
  a key known to be empty itself, while its limits are current): hammering an
  exhausted key costs at most one lease per ``B / rate`` seconds (~10 a
  second) per replica.
* Concurrent callers needing the same key's lease share one in-flight lease
  (single flight); an org's and a principal's leases run concurrently.
* A call that needs two buckets (its org's and its principal's) is admitted
  only if both have a token, and then takes one from each in the same
  synchronous step, so a refusal by one never spends the other's token.
* Per-org limits come from ``limits_for`` (cached ``limits_ttl``, 10 s, one
  fetch in flight per org); deployment defaults from ``RateLimitDefaults``.
* Memory is bounded: at most ``max_buckets`` local buckets (100 000: ~45 MB,
  measured at ~430 bytes with a 90-character principal id) and as many orgs'
  limits, least recently used evicted first.

The database row is a better shared state than the alternatives here: an
advisory lock or a read-then-write would cost more round trips per lease, and
a cluster protocol between replicas is what ARCHITECTURE.md rules out.

Error bound
===========

N replicas, batch B, lease TTL L, δ the spread of the replicas' clocks.

* **Over-admission: none against the cumulative budget.** From a bucket's
  first use to any time t, the replicas together admit at most
  ``burst + rate × t`` calls (plus ``rate × δ`` once, if clocks disagree: the
  row's clock is the latest clock that leased from it and never runs back).
* **In any window of length W: at most ``burst + rate × W + min(N × B, rate × L)``.**
  The row caps its *own* tokens at the burst, while up to one batch per
  replica sits outside it, leased and unspent for at most L; after an idle
  spell those can be spent on top of a full row. With the defaults (B = a
  tenth of a second at full rate, L = 1 s) that is N tenths of a second's
  worth: two replicas on the default org limit, a burst of 1100, not 1000.
* **Under-admission: a call is refused only while fewer than N × B tokens
  exist in the row and in the other replicas' leases together.** The refusing
  replica holds none; the row holds less than a batch (the replica asks again
  as soon as a batch has refilled, at most ``B / rate`` seconds later, 0.1 s
  at full size; a lease that hands tokens back takes a whole batch at once, so
  hand-backs never strand tokens in the row); each other replica holds at
  most one batch, handed back with its next lease once its lease expires.
  While demand keeps the row from filling up (nothing is lost to the cap),
  the replicas together therefore admit at least ``burst + rate × t − N × B``.
  Under bursty demand the tokens a replica refused while waiting for a batch
  (fewer than B each time) are lost for good if the row fills up before the
  next call, so a call-by-call comparison with one central bucket drifts,
  both ways (tokens held outside the cap count the other way); the bounds
  above are what holds. A replica that stops using a key (or evicts it)
  forfeits at most B tokens: the bucket refills ``B / rate`` seconds late.
* **Configuration changes** apply on each replica within ``limits_ttl + L``
  (11 s): limits are cached for ``limits_ttl``, tokens leased under the old
  limit live at most L. A key refused under the old limit is re-evaluated at
  once when its limits are refreshed.
* Float tolerance: ``domain.rate_limit.EPSILON`` (1e-6 of a token per lease).

Database unavailable: fail open, to per-replica buckets
=======================================================

If a lease fails (the database is down, or answers slower than
``lease_timeout``, 0.25 s), the limiter stops asking for ``retry_interval``
(5 s, then probes again with the next lease) and each replica enforces every
limit **alone**, with an in-memory bucket of the same rate and burst, after
spending what it had already leased. During an outage the fleet therefore
admits at most ``N × (burst + rate × t)`` per key, never unlimited traffic,
and never refuses every call because the limiter's table is unreachable (which
would turn a limiter fault into a full outage). The first successful lease
resumes shared accounting. A slow lease is not cancelled: its tokens arrive
when it finishes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from typing import Final

from control_plane.clock import Clock
from control_plane.domain.errors import ResourceExhausted, Unavailable
from control_plane.domain.rate_limit import (
    EPSILON,
    ORG_BUCKET,
    Limit,
    OrgLimits,
    RateLimitDefaults,
    lease_batch,
    override,
    peer_bucket_key,
    principal_bucket_key,
    refill,
    retry_after_seconds,
    seconds_until,
)
from control_plane.domain.scope import OrgScope
from control_plane.logs import get_logger
from control_plane.storage import rate_buckets
from control_plane.storage.db import Database

_log = get_logger("agentauth.rate_limit")

LimitsFor = Callable[[OrgScope], Awaitable[OrgLimits]]

# What "the shared buckets are unusable" looks like. Any database error counts,
# not only a lost connection: storage turns every driver error of a lease into
# Unavailable (a failover onto a read-only standby or a missing grant must not
# turn every call into INTERNAL). Anything else is a bug and propagates.
_UNREACHABLE: Final = (Unavailable, TimeoutError, OSError)
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_NEVER: Final = dt.datetime.max.replace(tzinfo=dt.UTC)
_UNLIMITED_TOKENS: Final = 1 << 62
# A caller whose freshly leased tokens keep going to others gives up after this
# many rounds (each round admits somebody, so this only bounds one caller's wait).
_MAX_ROUNDS: Final = 8

_ORG, _PRINCIPAL, _PEER = 0, 1, 2


class _Bucket:
    """This replica's view of one shared bucket."""

    __slots__ = (
        "org_id",
        "scope",
        "key",
        "kind",
        "limit",
        "unlimited",
        "tokens",
        "expires",
        "blocked_until",
        "fresh_until",
        "refund",
        "flight",
        "spare",
        "spare_at",
    )

    def __init__(self, scope: OrgScope | None, key: str, kind: int) -> None:
        self.scope = scope  # None for an anonymous (platform) bucket
        self.org_id = scope.org_id if scope is not None else ""
        self.key = key
        self.kind = kind
        self.limit: Limit | None = None
        self.unlimited = False
        self.tokens = 0  # leased and unspent
        self.expires = _EPOCH  # leased tokens are not spent from this instant on
        self.blocked_until = _EPOCH  # the row is short: no lease, refuse, until then
        self.fresh_until = _EPOCH  # the limit is current until then (refusals skip the check)
        self.refund = 0  # expired tokens to hand back with the next lease
        self.flight: asyncio.Task[None] | None = None
        # The in-memory bucket used while the shared one is unreachable.
        self.spare = 0.0
        self.spare_at: dt.datetime | None = None


class _OrgEntry:
    __slots__ = ("limits", "until", "flight")

    def __init__(self) -> None:
        self.limits: OrgLimits | None = None
        self.until = _EPOCH
        self.flight: asyncio.Task[None] | None = None


class RateLimiter:
    """Charges each call to its buckets or raises ``ResourceExhausted``."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        defaults: RateLimitDefaults,
        limits_for: LimitsFor | None = None,
        *,
        lease_ttl: float = 1.0,
        limits_ttl: float = 10.0,
        lease_timeout: float = 0.25,
        retry_interval: float = 5.0,
        batch_fraction: float = 0.1,
        batch_cap: int = 1000,
        max_buckets: int = 100_000,
    ) -> None:
        if max_buckets < 2:
            raise ValueError("max_buckets must be at least 2")
        self._db = db
        self._clock = clock
        self._defaults = defaults
        self._limits_for = limits_for
        self._lease_ttl = dt.timedelta(seconds=lease_ttl)
        self._limits_ttl = dt.timedelta(seconds=limits_ttl)
        self._lease_timeout = lease_timeout
        self._retry_interval = dt.timedelta(seconds=retry_interval)
        self._batch_fraction = batch_fraction
        self._batch_cap = batch_cap
        self._max_buckets = max_buckets
        self._buckets: OrderedDict[tuple[str, str], _Bucket] = OrderedDict()
        self._orgs: OrderedDict[str, _OrgEntry] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()
        self._down_until: dt.datetime | None = None

    async def check(self, org: OrgScope | None, principal_key: str, peer: str | None) -> None:
        """Admit one call or raise ``ResourceExhausted`` (``retryAfterSeconds``).

        Authenticated (``org``, the principal's own scope): the org's bucket and
        the principal's (``principal_key``, a stable principal id). Anonymous
        (``org`` None): the bucket of the caller's address ``peer``.
        """
        now = self._clock.now()
        if org is None:
            b = self._bucket(None, peer_bucket_key(peer), _PEER)
            if b.tokens > 0 and now < b.expires:
                b.tokens -= 1
                return
            if _known_empty(b, now):
                raise _refused(b, b.blocked_until, now)
            await self._slow((b,), None)
            return
        ob = self._bucket(org, ORG_BUCKET, _ORG)
        pb = self._bucket(org, principal_bucket_key(principal_key), _PRINCIPAL)
        if ob.tokens > 0 and pb.tokens > 0 and now < ob.expires and now < pb.expires:
            ob.tokens -= 1
            pb.tokens -= 1
            return
        # Refusals are what a caller hammering an empty bucket produces: the
        # cheapest path, no lookups, no I/O.
        for b in (pb, ob):
            if _known_empty(b, now):
                raise _refused(b, b.blocked_until, now)
        await self._slow((ob, pb), org)

    def limits_changed(self, org_id: str) -> None:
        """The org's overrides changed: read them again at its next call (this replica
        at once; others hear it through the identity-change notification)."""
        entry = self._orgs.pop(org_id, None)
        if entry is not None:
            for b in self._buckets.values():
                if b.org_id == org_id:
                    b.fresh_until = _EPOCH  # a key refused under the old limit: re-check

    async def prune(self) -> int:
        """Delete anonymous buckets idle long enough to be full again (for a maintenance loop).

        Tenant buckets are bounded by the org's principals and go with the org.
        """
        limit = self._defaults.anonymous
        if limit.unlimited:
            return 0
        full_after = max(60.0, limit.burst / limit.rate_per_second)
        idle_before = self._clock.now() - dt.timedelta(seconds=full_after)
        return await rate_buckets.prune_anonymous(self._db, idle_before)

    async def close(self, grace: float | None = None) -> None:
        """Let leases in flight finish (``grace``, default ``lease_timeout``), cancel the rest.

        A cancelled lease's tokens are forfeited, never double-spent.
        """
        tasks = list(self._tasks)
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace or self._lease_timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    # ------------------------------------------------------------ the slow path

    async def _slow(self, buckets: tuple[_Bucket, ...], org: OrgScope | None) -> None:
        for _ in range(_MAX_ROUNDS):
            now = self._clock.now()
            limits, fresh_until = (
                (None, _NEVER) if org is None else await self._org_limits(org, now)
            )
            waiting: list[_Bucket] = []
            for b in buckets:
                self._settle(b, self._limit(b, limits), now)
                b.fresh_until = fresh_until
                if b.tokens > 0 and now < b.expires:
                    continue
                if now < b.blocked_until:
                    raise _refused(b, b.blocked_until, now)
                waiting.append(b)
            if not waiting:
                for b in buckets:
                    b.tokens -= 1
                return
            if self._degraded(now):
                self._spend_spare(buckets, waiting, now)
                return
            await self._leases(waiting)
        raise ResourceExhausted(1, debug="lease contention")

    def _limit(self, b: _Bucket, limits: OrgLimits | None) -> Limit:
        if b.kind == _PEER or limits is None:
            return self._defaults.anonymous
        return limits.org if b.kind == _ORG else limits.principal

    def _settle(self, b: _Bucket, limit: Limit, now: dt.datetime) -> None:
        """Bring the bucket up to date with its limit and with time."""
        if limit != b.limit:
            b.limit = limit
            b.blocked_until = _EPOCH  # refused under the old limit: ask again
            if b.unlimited:
                b.unlimited, b.tokens, b.expires = False, 0, _EPOCH
        if limit.unlimited:
            b.unlimited = True
            b.tokens = _UNLIMITED_TOKENS
            b.expires = now + self._limits_ttl  # then look at the limits again
            return
        if b.tokens > 0 and now >= b.expires:  # a lease ran out: hand the rest back
            b.refund += b.tokens
            b.tokens = 0

    async def _leases(self, waiting: list[_Bucket]) -> None:
        flights = [self._flight(b) for b in waiting]
        try:
            async with asyncio.timeout(self._lease_timeout):
                for flight in flights:
                    # Shielded: a caller's cancellation or our timeout never
                    # cancels a lease that other callers share.
                    await asyncio.shield(flight)
        except TimeoutError:
            self._trip("lease timed out")

    def _flight(self, b: _Bucket) -> asyncio.Task[None]:
        if b.flight is None:
            b.flight = self._spawn(self._lease(b))
        return b.flight

    def _spawn(self, work: Coroutine[object, object, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        # Every waiter may have given up (timeout, cancellation): retrieve a bug's
        # exception here so it is logged, not lost.
        if not task.cancelled() and task.exception() is not None:
            _log.error("rate limits: lease failed", error=type(task.exception()).__name__)

    async def _lease(self, b: _Bucket) -> None:
        limit = b.limit
        assert limit is not None and not limit.unlimited
        want = lease_batch(limit, fraction=self._batch_fraction, cap=self._batch_cap)
        refund, b.refund = b.refund, 0
        started = self._clock.now()
        loop = asyncio.get_running_loop()
        began = loop.time()
        try:
            if b.scope is not None:
                got = await rate_buckets.lease(
                    self._db, b.scope, b.key, limit, want, started, refund=refund
                )
            else:
                got = await rate_buckets.lease_anonymous(
                    self._db, b.key, limit, want, started, refund=refund
                )
        except _UNREACHABLE as exc:
            # Whether the refund landed is unknown: it is dropped (under-admission only).
            self._trip(type(exc).__name__)
            return
        finally:
            b.flight = None
        if loop.time() - began < self._lease_timeout:
            self._recovered()  # a late answer leaves the breaker to expire, or it would flap
        if b.unlimited or b.limit != limit:
            return  # the limits changed meanwhile; these tokens are forfeited
        b.tokens += got.granted
        b.expires = started + self._lease_ttl
        b.blocked_until = got.available_at(want, limit) if got.granted < want else _EPOCH

    # ------------------------------------------------------------ org limits

    async def _org_limits(self, org: OrgScope, now: dt.datetime) -> tuple[OrgLimits, dt.datetime]:
        """The org's limits, and until when they are current."""
        if self._limits_for is None:
            return self._defaults.for_org(), _NEVER
        org_id = org.org_id
        entry = self._orgs.get(org_id)
        if entry is None:
            entry = _OrgEntry()
            self._orgs[org_id] = entry
            if len(self._orgs) > self._max_buckets:
                self._orgs.popitem(last=False)
        else:
            self._orgs.move_to_end(org_id)
        if now < entry.until or self._degraded(now):
            return entry.limits or self._defaults.for_org(), entry.until
        if entry.flight is None:
            entry.flight = self._spawn(self._fetch_limits(org, entry))
        try:
            async with asyncio.timeout(self._lease_timeout):
                await asyncio.shield(entry.flight)
        except TimeoutError:
            self._trip("limits lookup timed out")
        return entry.limits or self._defaults.for_org(), entry.until

    async def _fetch_limits(self, org: OrgScope, entry: _OrgEntry) -> None:
        assert self._limits_for is not None
        try:
            entry.limits = await self._limits_for(org)
            entry.until = self._clock.now() + self._limits_ttl
        except _UNREACHABLE as exc:
            # Keep what we had (or the defaults) and do not ask again at once.
            entry.until = self._clock.now() + self._retry_interval
            self._trip(type(exc).__name__)
        finally:
            entry.flight = None

    # ------------------------------------------------------------ degraded mode

    def _degraded(self, now: dt.datetime) -> bool:
        return self._down_until is not None and now < self._down_until

    def _trip(self, why: str) -> None:
        now = self._clock.now()
        if not self._degraded(now):
            _log.warning(
                "rate limits: shared buckets unreachable; limiting per replica",
                error=why,
                retry_seconds=self._retry_interval.total_seconds(),
            )
        self._down_until = now + self._retry_interval

    def _recovered(self) -> None:
        if self._down_until is not None:
            self._down_until = None
            _log.info("rate limits: shared buckets reachable again")

    def _spend_spare(
        self, buckets: tuple[_Bucket, ...], waiting: list[_Bucket], now: dt.datetime
    ) -> None:
        """Admit from this replica's own buckets (same limits) while the shared ones are away."""
        for b in waiting:
            limit = b.limit
            assert limit is not None
            if b.spare_at is None:
                b.spare = float(limit.burst)
            else:
                b.spare = refill(b.spare, (now - b.spare_at).total_seconds(), limit)
            b.spare_at = now
            if b.spare + EPSILON < 1:
                wait = seconds_until(b.spare, 1, limit)
                raise _refused(b, now + dt.timedelta(seconds=wait), now)
        for b in buckets:
            if b in waiting:
                b.spare -= 1
            else:
                b.tokens -= 1

    # ------------------------------------------------------------ local buckets

    def _bucket(self, org: OrgScope | None, key: str, kind: int) -> _Bucket:
        # Every tenant key includes the org: (org_id, key).
        k = (org.org_id if org is not None else "", key)
        b = self._buckets.get(k)
        if b is None:
            b = _Bucket(org, key, kind)
            self._buckets[k] = b
            if len(self._buckets) > self._max_buckets:
                self._buckets.popitem(last=False)  # forfeits at most one batch
        else:
            self._buckets.move_to_end(k)
        return b


def _known_empty(b: _Bucket, now: dt.datetime) -> bool:
    """No usable token, the row known to be short, and the limit still current."""
    return now < b.blocked_until and now < b.fresh_until and not (b.tokens > 0 and now < b.expires)


def _refused(b: _Bucket, until: dt.datetime, now: dt.datetime) -> ResourceExhausted:
    wait = retry_after_seconds((until - now).total_seconds())
    which = "peer" if b.kind == _PEER else ("org" if b.kind == _ORG else "principal")
    return ResourceExhausted(wait, debug=f"{which} bucket empty")


def organization_limits(db: Database, defaults: RateLimitDefaults) -> LimitsFor:
    """``limits_for`` from the organizations table's override columns (NULL: default)."""

    async def limits_for(org: OrgScope) -> OrgLimits:
        found = await rate_buckets.org_overrides(db, org)
        if found is None:
            return defaults.for_org()
        try:
            return OrgLimits(
                org=override(defaults.org, found.rate_limit_rps, found.rate_limit_burst),
                principal=override(
                    defaults.principal,
                    found.principal_rate_limit_rps,
                    found.principal_rate_limit_burst,
                ),
            )
        except ValueError:
            # A bad stored value must not take the org's traffic down with it.
            _log.error("rate limits: invalid override; using the defaults", org_id=org.org_id)
            return defaults.for_org()

    return limits_for
