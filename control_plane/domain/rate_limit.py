"""Token buckets for the request pipeline's rate limits: the arithmetic, no I/O.

A bucket holds at most ``burst`` tokens and gains ``rate_per_second`` tokens a
second; a call spends one token or is refused. ``rate_per_second == 0`` means
*unlimited* (the bucket is disabled): a bucket that never refills would be a
lifetime quota, which is a different feature and a foot-gun as a "rate".

Where the tokens live and how replicas share them is
``control_plane.services.rate_limiter``'s business; this module only knows
buckets, batches and the retry hint.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import math
import urllib.parse
from dataclasses import dataclass

# Whole-deployment ceilings, so that float arithmetic on tokens stays exact to
# far better than a token (a double has 53 bits; 1e7 tokens leave ~1e-9 of slack).
MAX_RATE = 10_000_000.0
MAX_BURST = 10_000_000

# A refilled bucket that is this close below a whole token counts as having it:
# refills are computed from integer microseconds, so a bucket that should hold
# exactly n tokens can come out at n - 1e-12. The slack admits at most 1e-6 of
# a token more than exact arithmetic would, per lease.
EPSILON = 1e-6

ORG_BUCKET = "org"
PRINCIPAL_PREFIX = "principal:"
PEER_PREFIX = "peer:"
MAX_KEY_LENGTH = 128  # the bucket_key columns are String(128)


@dataclass(frozen=True, slots=True)
class Limit:
    """``rate_per_second`` tokens a second, at most ``burst`` saved up; rate 0: unlimited."""

    rate_per_second: float
    burst: int

    def __post_init__(self) -> None:
        rate = self.rate_per_second
        if isinstance(rate, bool) or not isinstance(rate, int | float):
            raise ValueError("rate_per_second must be a number")
        if not math.isfinite(rate) or rate < 0 or rate > MAX_RATE:
            raise ValueError(f"rate_per_second must be in [0, {MAX_RATE:g}]")
        if isinstance(self.burst, bool) or not isinstance(self.burst, int):
            raise ValueError("burst must be an integer")
        if not 1 <= self.burst <= MAX_BURST:
            raise ValueError(f"burst must be in [1, {MAX_BURST}]")

    @property
    def unlimited(self) -> bool:
        return self.rate_per_second == 0


UNLIMITED = Limit(0.0, 1)


@dataclass(frozen=True, slots=True)
class OrgLimits:
    """One organization's limits: the whole org, and each principal in it."""

    org: Limit
    principal: Limit


@dataclass(frozen=True, slots=True)
class RateLimitDefaults:
    """The deployment's limits, for orgs without overrides and for anonymous callers.

    They protect the deployment from one tenant's runaway loop, not callers from
    themselves, so they sit well above what a healthy workload does; an operator
    tightens them per org (``UpdateOrganization`` ``rate_limits``, platform admins)
    or for everyone (``AGENTAUTH_RATE_LIMIT_*``). Why these numbers:

    * org 2000/s, burst 4000. One organization's agents, all together: a mint or
      an ExecuteTool per agent step is a few calls a second per busy agent, so
      hundreds of busy agents fit, while an org whose loop runs away takes at
      most about one replica's worth of a deployment's capacity (a replica
      serves a few thousand calls a second), and the burst absorbs a 2-second spike.
    * principal 1000/s, burst 2000. One admin key, service account or connect
      link: half the org's budget, so one runaway principal cannot starve the
      rest of its org.
    * anonymous 1000/s, burst 2000, per client address (IPv6 per /64). Calls that
      arrive before any org is known (token grants by workloads, OAuth endpoints):
      a whole cluster's pods usually share one egress address, so the limit is
      per address and generous; it still bounds how fast one address can make us
      verify signatures and fetch keys for nothing.
    * Batches are a tenth of a second at the full rate, so a busy key costs each
      replica about ten database leases a second, whatever the rate.
    """

    org: Limit = Limit(2000.0, 4000)
    principal: Limit = Limit(1000.0, 2000)
    anonymous: Limit = Limit(1000.0, 2000)

    def for_org(self) -> OrgLimits:
        return OrgLimits(org=self.org, principal=self.principal)


def override(default: Limit, rate_per_second: float | None, burst: int | None) -> Limit:
    """A per-org override: each NULL field falls back to the deployment's."""
    return Limit(
        default.rate_per_second if rate_per_second is None else float(rate_per_second),
        default.burst if burst is None else burst,
    )


def refill(tokens: float, elapsed_seconds: float, limit: Limit) -> float:
    """The bucket after ``elapsed_seconds``: ``rate`` tokens a second, capped at ``burst``.

    Time running backwards (another replica's clock ahead of ours) adds nothing.
    """
    return min(float(limit.burst), tokens + limit.rate_per_second * max(0.0, elapsed_seconds))


def seconds_until(tokens: float, needed: float, limit: Limit) -> float:
    """How long until a bucket now holding ``tokens`` holds ``needed`` (0: already)."""
    if limit.unlimited or tokens + EPSILON >= needed:
        return 0.0
    return (min(needed, float(limit.burst)) - tokens) / limit.rate_per_second


def retry_after_seconds(wait_seconds: float) -> int:
    """The hint for ``Retry-After`` / ``retryAfterSeconds``: whole seconds, at least 1.

    Rounded up, so a client that waits exactly the hint finds the token there
    (RFC 9110 §10.2.3 delay-seconds is a non-negative integer; 0 would invite an
    immediate retry that is refused again).
    """
    return max(1, math.ceil(wait_seconds - 1e-9))


def lease_batch(limit: Limit, *, fraction: float = 0.1, cap: int = 1000) -> int:
    """How many tokens a replica leases at a time: ``fraction`` of a second's worth.

    At least 1, at most ``cap`` and never more than the bucket can hold. A tenth
    of a second at the full rate means ~10 leases a second per busy key per
    replica, whatever the rate, while bounding what a replica can hold unspent.
    """
    if limit.unlimited:
        return 0
    return max(1, min(math.ceil(limit.rate_per_second * fraction), cap, limit.burst))


def principal_bucket_key(principal_key: str) -> str:
    """``principal:<stable principal id>``; a long id is hashed to fit the column."""
    if not principal_key:
        raise ValueError("principal_key must be non-empty")
    key = PRINCIPAL_PREFIX + principal_key
    if len(key) <= MAX_KEY_LENGTH:
        return key
    return PRINCIPAL_PREFIX + "sha256:" + hashlib.sha256(principal_key.encode()).hexdigest()


@functools.lru_cache(maxsize=4096)
def peer_bucket_key(peer: str | None) -> str:
    """``peer:<address>`` for an anonymous caller; IPv6 callers are grouped by /64.

    Accepts a bare address (aiohttp's ``request.remote``), ``host:port``, or a
    gRPC peer string (``ipv4:1.2.3.4:5678``, ``ipv6:[::1]:5678``, possibly
    percent-encoded; ``unix:…``). An IPv4-mapped IPv6 address counts as its IPv4
    address. What cannot be parsed shares one bucket, ``peer:unknown``: refusing
    such callers outright would break odd transports, giving each its own bucket
    would let them dodge the limit.

    A /64 is what one customer line or one cloud instance is given; limiting
    single IPv6 addresses would let one host rotate through 2^64 of them.
    """
    if not peer:
        return PEER_PREFIX + "unknown"
    text = urllib.parse.unquote(peer.strip())
    scheme, sep, rest = text.partition(":")
    if sep and scheme in ("ipv4", "ipv6"):
        text = rest
    elif sep and scheme == "unix":
        return PEER_PREFIX + "unix"
    address = _parse_address(text)
    if address is None:
        return PEER_PREFIX + "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return PEER_PREFIX + str(address.ipv4_mapped)
        network = ipaddress.IPv6Network((int(address) >> 64 << 64, 64))
        return PEER_PREFIX + str(network)
    return PEER_PREFIX + str(address)


def _parse_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if text.startswith("["):  # [v6]:port
        text = text[1 : text.find("]")] if "]" in text else ""
    candidates = [text]
    host, sep, port = text.rpartition(":")
    if sep and port.isdigit():
        candidates.append(host)  # v4:port (a bare v6 address also ends in :digits)
    for candidate in candidates:
        try:
            address = ipaddress.ip_address(candidate.split("%", 1)[0])  # drop a zone id
        except ValueError:
            continue
        return address
    return None
