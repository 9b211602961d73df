"""Properties of the timestamp-derived key lifecycle, over random operation histories.

The manager's operations are replayed in memory (rotate, taint with the
emergency replacement, prune, bootstrap, time passing) and after every step the
§B1 "Key rotation overlap" promises must hold:

* something can always sign, and the signer is in the JWKS;
* a key that signs was published at least one cache TTL earlier, unless it is
  a bootstrap/replacement key (published and activated together);
* every signature stays verifiable - its key published - for the maximum
  token lifetime, unless the key was tainted;
* a retired key never signs again; a tainted key is never published.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

from hypothesis import given, settings
from hypothesis import strategies as st

from control_plane.tokens import lifecycle

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
TTL = dt.timedelta(minutes=5)
MAX = dt.timedelta(minutes=15)
TICK = dt.timedelta(microseconds=1)


@dataclass(frozen=True)
class Key:
    kid: str
    publish_time: dt.datetime
    activate_time: dt.datetime
    taint_time: dt.datetime | None = None


class History:
    def __init__(self) -> None:
        self.now = T0
        self.keys: list[Key] = []
        self.serial = 0
        self.tainted: set[str] = set()
        self.retired: set[str] = set()
        self.signatures: list[tuple[dt.datetime, str]] = []
        self.signer: str | None = None
        self.ensure()

    def add(self, publish: dt.datetime, activate: dt.datetime) -> None:
        self.serial += 1
        self.keys.append(Key(f"k{self.serial:04}", publish, activate))

    def ensure(self) -> None:
        if lifecycle.active_signer(self.keys, self.now) is None:
            self.add(self.now, self.now)

    def rotate(self) -> None:
        self.add(self.now, self.now + TTL)

    def taint(self, index: int) -> None:
        live = [k for k in self.keys if not lifecycle.is_tainted(k, self.now)]
        if not live:
            return
        target = live[index % len(live)]
        before = lifecycle.active_signer(self.keys, self.now)
        self.keys = [replace(k, taint_time=self.now) if k is target else k for k in self.keys]
        self.tainted.add(target.kid)
        after = lifecycle.active_signer(self.keys, self.now)
        if before is not None and before.kid == target.kid and after is None:
            self.add(self.now, self.now)

    def prune(self) -> None:
        gone = set(lifecycle.prunable(self.keys, self.now, MAX))
        self.keys = [k for k in self.keys if k.kid not in gone]

    def advance(self, delta: dt.timedelta) -> None:
        """Move time, checking just before and at every activation passed on the way."""
        end = self.now + delta
        instants = sorted({k.activate_time for k in self.keys if self.now < k.activate_time <= end})
        for instant in instants:
            for t in (instant - TICK, instant):
                if t > self.now:
                    self.now = t
                    self.check()
        self.now = end

    def check(self) -> None:
        signer = lifecycle.active_signer(self.keys, self.now)
        assert signer is not None, "nothing can sign"
        assert lifecycle.is_published(signer, self.keys, self.now, MAX)
        if signer.publish_time != signer.activate_time:
            assert signer.activate_time - signer.publish_time >= TTL
        if self.signer is not None and self.signer != signer.kid:
            self.retired.add(self.signer)
        assert signer.kid not in self.retired, "a retired key signed again"
        self.signer = signer.kid
        self.signatures.append((self.now, signer.kid))
        by_kid = {k.kid: k for k in self.keys}
        for signed_at, kid in self.signatures:
            if self.now <= signed_at + MAX and kid not in self.tainted:
                key = by_kid.get(kid)
                assert key is not None, "pruned while tokens it signed are alive"
                assert lifecycle.is_published(key, self.keys, self.now, MAX)
        for key in self.keys:
            if lifecycle.is_tainted(key, self.now):
                assert not lifecycle.is_published(key, self.keys, self.now, MAX)
                assert lifecycle.state(key, self.keys, self.now) == "tainted"


DELTAS = st.sampled_from(
    [TICK, dt.timedelta(seconds=1), TTL - TICK, TTL, MAX, MAX + TICK, dt.timedelta(hours=1)]
)
OPS = st.one_of(
    st.tuples(st.just("advance"), DELTAS),
    st.tuples(st.just("rotate"), st.none()),
    st.tuples(st.just("taint"), st.integers(0, 7)),
    st.tuples(st.just("prune"), st.none()),
    st.tuples(st.just("ensure"), st.none()),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(OPS, max_size=40))
def test_rotation_promises_hold_for_any_history(ops: list[tuple[str, object]]) -> None:
    history = History()
    history.check()
    for name, arg in ops:
        if name == "advance":
            assert isinstance(arg, dt.timedelta)
            history.advance(arg)
        elif name == "taint":
            assert isinstance(arg, int)
            history.taint(arg)
        else:
            getattr(history, name)()
        history.check()


def test_equal_activation_times_are_ordered_by_kid() -> None:
    a, b = Key("a", T0, T0), Key("b", T0, T0)
    assert lifecycle.active_signer([b, a], T0) == b
    assert lifecycle.retire_time(a, [a, b]) == T0
    assert lifecycle.state(a, [a, b], T0) == "retired"


def test_a_key_tainted_before_activation_never_takes_over() -> None:
    a = Key("a", T0, T0)
    b = Key("b", T0, T0 + TTL, taint_time=T0 + TTL - TICK)
    assert lifecycle.retired_by(a, [a, b]) is None
    assert lifecycle.active_signer([a, b], T0 + TTL) == a
    assert lifecycle.state(b, [a, b], T0) == "pending"
    assert lifecycle.state(b, [a, b], T0 + TTL) == "tainted"


def test_a_key_tainted_at_its_activation_instant_did_take_over() -> None:
    # It may have signed at that instant, so its predecessor stays retired and
    # nothing signs until the manager adds a replacement.
    a = Key("a", T0, T0)
    b = Key("b", T0, T0 + TTL, taint_time=T0 + TTL)
    assert lifecycle.retire_time(a, [a, b]) == T0 + TTL
    assert lifecycle.active_signer([a, b], T0 + TTL) is None
    assert lifecycle.state(a, [a, b], T0 + TTL) == "retired"
