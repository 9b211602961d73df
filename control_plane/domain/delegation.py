"""Delegation chains (RFC 8693 §4.1): nested ``act``, depth, attenuation. Pure rules.

§4.1: "the most recent actor [is] the outermost ``act``" and "prior actors [are]
nested"; "only the top-level claims and the current actor (outermost) are to be
considered for access control decisions", so nested actors are history. We build
the new ``act`` server-side from the authenticated actor and copy the previous
one verbatim from the verified subject token — never from request parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from control_plane.domain.tool_scopes import covers

HARD_DEPTH_LIMIT = 16  # no org setting can go past this


class ChainInvalid(ValueError):
    pass


def actor_chain(act: Any) -> list[str]:
    """Actor subjects, current (outermost) first; refuses malformed or too deep chains."""
    chain: list[str] = []
    node = act
    while node is not None:
        if len(chain) >= HARD_DEPTH_LIMIT:
            raise ChainInvalid("act chain too deep")
        if not isinstance(node, Mapping) or not isinstance(node.get("sub"), str):
            raise ChainInvalid("act must be an object with a string sub")
        if set(node) - {"sub", "act"}:
            raise ChainInvalid("act carries unexpected members")
        chain.append(node["sub"])
        node = node.get("act")
    return chain


def nest(new_actor: str, previous: Mapping[str, Any] | None) -> dict[str, Any]:
    """The new outermost actor, with the previous ``act`` object inside it verbatim."""
    out: dict[str, Any] = {"sub": new_actor}
    if previous is not None:
        out["act"] = previous
    return out


def attenuate(ceiling: frozenset[str], requested: frozenset[str] | None) -> frozenset[str] | None:
    """Granted scopes: the request if it is within ``ceiling``, else None (invalid_scope).

    The ceiling is what every party allows (the policy; for a sub-delegation the
    parent's scopes met with the actor's policy, :func:`.tool_scopes.meet`). With no
    request the grant is the whole ceiling — never more (RFC 8693 §2.1: a token
    exchange can only narrow). A requested tool scope is within the ceiling when a
    ceiling scope covers it (``tools:gmail.*`` covers ``tools:gmail.send_message``).
    """
    if requested is None:
        return ceiling
    # A tool scope may also be narrowed: tools:gmail.* allows asking tools:gmail.send.
    if not beyond(ceiling, requested):
        return requested
    return None


def beyond(ceiling: frozenset[str], requested: frozenset[str]) -> list[str]:
    """The requested scopes no ceiling scope covers, sorted (empty: all are allowed)."""
    return sorted(r for r in requested if not any(covers(c, r) for c in ceiling))


def child_expiry(parent_exp: int, actor_exp: int, now: int, ttl: int) -> int | None:
    """The child's exp never passes its parent's or its actor credential's; None when
    there is less than two seconds left to live."""
    exp = min(parent_exp, actor_exp, now + ttl)
    return exp if exp >= now + 2 else None
