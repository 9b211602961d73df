"""Token-bucket arithmetic, batch sizing, retry hints and bucket keys (pure)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from control_plane.domain.errors import ResourceExhausted
from control_plane.domain.rate_limit import (
    MAX_KEY_LENGTH,
    Limit,
    RateLimitDefaults,
    lease_batch,
    override,
    peer_bucket_key,
    principal_bucket_key,
    refill,
    retry_after_seconds,
    seconds_until,
)

INVALID_LIMITS = [
    (-1.0, 1),
    (math.nan, 1),
    (math.inf, 1),
    (1e8, 1),
    (1.0, 0),
    (1.0, -5),
    (1.0, 10**8),
    (1.0, 1.5),
    (True, 1),
    (1.0, True),
    ("5", 1),
]


@pytest.mark.parametrize(("rate", "burst"), INVALID_LIMITS)
def test_invalid_limits_are_refused(rate, burst) -> None:
    with pytest.raises(ValueError):
        Limit(rate, burst)


def test_rate_zero_means_unlimited() -> None:
    assert Limit(0, 5).unlimited
    assert not Limit(0.001, 1).unlimited
    assert lease_batch(Limit(0, 5)) == 0


REFILLS = [
    # tokens, elapsed, rate, burst, expected
    (0.0, 1.0, 10.0, 100, 10.0),
    (95.0, 1.0, 10.0, 100, 100.0),  # capped at the burst
    (3.0, -5.0, 10.0, 100, 3.0),  # a clock that runs back adds nothing
    (0.5, 2.5, 0.2, 3, 1.0),
    (0.0, 0.0, 500.0, 1000, 0.0),
]


@pytest.mark.parametrize(("tokens", "elapsed", "rate", "burst", "expected"), REFILLS)
def test_refill(tokens, elapsed, rate, burst, expected) -> None:
    assert refill(tokens, elapsed, Limit(rate, burst)) == pytest.approx(expected)


RETRY_HINTS = [(0.0, 1), (0.001, 1), (1.0, 1), (1.0001, 2), (4.999, 5), (5.0, 5), (59.2, 60)]


@pytest.mark.parametrize(("wait", "hint"), RETRY_HINTS)
def test_retry_after_is_whole_seconds_rounded_up_and_at_least_one(wait, hint) -> None:
    assert retry_after_seconds(wait) == hint


BATCHES = [
    # rate, burst, batch: a tenth of a second at the full rate, 1 <= batch <= min(cap, burst)
    (500.0, 1000, 50),
    (100.0, 200, 10),
    (200.0, 400, 20),
    (0.2, 3, 1),
    (15.0, 100, 2),
    (1e6, 10**6, 1000),
    (100.0, 5, 5),
]


@pytest.mark.parametrize(("rate", "burst", "batch"), BATCHES)
def test_lease_batch(rate, burst, batch) -> None:
    assert lease_batch(Limit(rate, burst)) == batch


@settings(max_examples=300)
@given(
    rate=st.floats(min_value=0.001, max_value=1e5),
    burst=st.integers(min_value=1, max_value=10**5),
    tokens=st.floats(min_value=0, max_value=1),
)
def test_waiting_the_computed_time_yields_the_token(rate, burst, tokens) -> None:
    limit = Limit(rate, burst)
    wait = seconds_until(tokens, 1, limit)
    assert refill(tokens, wait, limit) >= 1 - 1e-6
    assert retry_after_seconds(wait) >= max(1, wait - 1e-9)


def test_defaults_are_valid_and_org_limits_fall_back_per_field() -> None:
    d = RateLimitDefaults()
    assert d.org == Limit(2000, 4000) and d.principal == Limit(1000, 2000)
    assert d.anonymous == Limit(1000, 2000)
    assert override(d.org, None, None) == d.org
    assert override(d.org, 5, None) == Limit(5, 4000)
    assert override(d.org, None, 7) == Limit(2000, 7)
    assert override(d.org, 0, None).unlimited


PEERS = [
    (None, "peer:unknown"),
    ("", "peer:unknown"),
    ("garbage", "peer:unknown"),
    ("1.2.3.4", "peer:1.2.3.4"),
    ("1.2.3.4:5678", "peer:1.2.3.4"),
    ("ipv4:1.2.3.4:5678", "peer:1.2.3.4"),
    ("ipv4:1.2.3.4:9", "peer:1.2.3.4"),
    # IPv6 is grouped by /64: one host cannot rotate through its 2^64 addresses.
    ("ipv6:[2001:db8:1:2:3:4:5:6]:443", "peer:2001:db8:1:2::/64"),
    ("ipv6:%5B2001:db8:1:2::ffff%5D:443", "peer:2001:db8:1:2::/64"),
    ("2001:db8:1:2:aaaa::1", "peer:2001:db8:1:2::/64"),
    ("2001:db8:1:3::1", "peer:2001:db8:1:3::/64"),
    ("[::1]:50051", "peer:::/64"),
    ("fe80::1%eth0", "peer:fe80::/64"),
    ("[::ffff:1.2.3.4]:80", "peer:1.2.3.4"),  # IPv4-mapped counts as the IPv4 address
    ("unix:/run/agentauth.sock", "peer:unix"),
]


@pytest.mark.parametrize(("peer", "key"), PEERS)
def test_peer_bucket_key(peer, key) -> None:
    assert peer_bucket_key(peer) == key


def test_principal_bucket_key_fits_the_column() -> None:
    assert principal_bucket_key("orgs/o/users/u") == "principal:orgs/o/users/u"
    long = principal_bucket_key("x" * 500)
    assert len(long) <= MAX_KEY_LENGTH and long.startswith("principal:sha256:")
    assert long != principal_bucket_key("x" * 501)
    with pytest.raises(ValueError):
        principal_bucket_key("")


def test_resource_exhausted_carries_the_hint_and_a_safe_message() -> None:
    err = ResourceExhausted(7, debug="principal bucket empty")
    assert (err.code, err.reason, err.http_status) == ("RESOURCE_EXHAUSTED", "RATE_LIMITED", 429)
    assert err.metadata == {"retryAfterSeconds": "7"} and err.retry_after_seconds == 7
    assert "principal" not in err.message
    with pytest.raises(ValueError):
        ResourceExhausted(0)
