"""Property tests (hypothesis) of the attenuation rules the sub-delegation grant uses."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from control_plane.domain.delegation import (
    HARD_DEPTH_LIMIT,
    ChainInvalid,
    actor_chain,
    attenuate,
    beyond,
    child_expiry,
    nest,
)

SCOPES = st.frozensets(st.sampled_from(["a", "b", "c", "d", "e", "read", "write"]), max_size=7)


@settings(max_examples=500)
@given(
    root=SCOPES,
    hops=st.lists(st.tuples(SCOPES, st.one_of(st.none(), SCOPES)), min_size=1, max_size=8),
)
def test_a_child_never_has_more_scopes_than_its_parent(root, hops) -> None:
    parent = root
    for actor_allowed, requested in hops:
        child = attenuate(parent & actor_allowed, requested)
        if child is None:
            assert requested is not None and not requested <= (parent & actor_allowed)
            break
        assert child <= parent and child <= actor_allowed
        parent = child


@settings(max_examples=500)
@given(
    now=st.integers(0, 2**40),
    root_ttl=st.integers(0, 900),
    hops=st.lists(st.tuples(st.integers(-100, 4000), st.integers(1, 900)), min_size=1, max_size=8),
)
def test_a_child_never_outlives_its_parent(now, root_ttl, hops) -> None:
    parent_exp = now + root_ttl
    for actor_offset, ttl in hops:
        exp = child_expiry(parent_exp, now + actor_offset, now, ttl)
        if exp is None:
            break
        assert now + 2 <= exp <= parent_exp and exp <= now + actor_offset and exp <= now + ttl
        parent_exp = exp


@given(subs=st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=HARD_DEPTH_LIMIT))
def test_nesting_round_trips_and_keeps_the_current_actor_outermost(subs) -> None:
    act = None
    for sub in subs:
        act = nest(sub, act)
    assert actor_chain(act) == list(reversed(subs))


def test_a_500_deep_forged_act_is_refused_without_recursion() -> None:
    act: dict = {"sub": "x"}
    for _ in range(500):
        act = {"sub": "x", "act": act}
    try:
        actor_chain(act)
    except ChainInvalid:
        return
    raise AssertionError("deep chain accepted")


@settings(max_examples=300)
@given(ceiling=SCOPES, requested=SCOPES)
def test_beyond_names_exactly_what_attenuation_refuses(ceiling, requested) -> None:
    """``invalid_scope`` names the scopes outside the ceiling, and only those."""
    refused = beyond(ceiling, requested)
    assert refused == sorted(requested - ceiling)
    assert (attenuate(ceiling, requested) is None) == bool(refused)


def test_beyond_honours_tool_scope_wildcards() -> None:
    ceiling = frozenset({"tools:gmail.*"})
    asked = frozenset({"tools:gmail.send_message", "tools:slack.post", "admin"})
    assert beyond(ceiling, asked) == ["admin", "tools:slack.post"]
