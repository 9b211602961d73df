"""Signing-key lifecycle, derived from timestamps only (no state column to drift).

A key row has ``publish_time``, ``activate_time`` and an optional
``taint_time``. Everything else follows, for any instant ``t``:

* **tainted** from ``taint_time`` on: never published, never used to sign.
* **retired** once a newer key activates. "Newer" orders keys by
  ``(activate_time, kid)``; a newer key counts only if it was not tainted
  before its activation (a pending key tainted early never took over, so the
  key before it kept signing). ``retire_time`` is therefore a fixed property
  of the key set, not of ``t``, and a retired key never signs again - not even
  when its successor is tainted later (the manager creates a fresh key then).
* the **active signer** at ``t`` is the untainted, unretired key with the
  greatest ``activate_time <= t`` (ties broken by kid, so every replica agrees).
* **published** from ``publish_time`` until ``retire_time + max_token_ttl``
  inclusive: the last token it signed (at ``retire_time`` at the latest) stays
  verifiable for its whole lifetime.

These encode the rotation rules of Keycloak (active + passive keys) and SPIRE
(prepare -> activate -> taint): publish the next key at least one JWKS cache
TTL before it signs; keep a retired key published at least the maximum token
lifetime after its last signature; remove a tainted key at once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Literal, Protocol, TypeVar

__all__ = [
    "KeyState",
    "KeyTimes",
    "active_signer",
    "is_published",
    "prunable",
    "publication_ended",
    "retire_time",
    "retired_by",
    "state",
]

KeyState = Literal["pending", "active", "retired", "tainted"]


class KeyTimes(Protocol):
    @property
    def kid(self) -> str: ...
    @property
    def publish_time(self) -> dt.datetime: ...
    @property
    def activate_time(self) -> dt.datetime: ...
    @property
    def taint_time(self) -> dt.datetime | None: ...


K = TypeVar("K", bound=KeyTimes)


def is_tainted(key: KeyTimes, t: dt.datetime) -> bool:
    return key.taint_time is not None and key.taint_time <= t


def _order(key: KeyTimes) -> tuple[dt.datetime, str]:
    return (key.activate_time, key.kid)


def _took_over(key: KeyTimes) -> bool:
    """Did this key reach its activate_time untainted (and so possibly sign)?

    A taint at the very instant of activation still counts as a takeover: the
    key may have signed at that instant, and its predecessor must not resume.
    """
    return key.taint_time is None or key.taint_time >= key.activate_time


def retired_by(key: K, keys: Iterable[K]) -> K | None:
    """The first newer key that took over from ``key``, if any."""
    successors = [k for k in keys if _order(k) > _order(key) and _took_over(k)]
    return min(successors, key=_order, default=None)


def retire_time(key: KeyTimes, keys: Iterable[KeyTimes]) -> dt.datetime | None:
    """When ``key`` signed for the last time (None while nothing newer has activated)."""
    successor = retired_by(key, keys)
    return None if successor is None else successor.activate_time


def active_signer(keys: Sequence[K], t: dt.datetime) -> K | None:
    candidates = [
        k
        for k in keys
        if k.activate_time <= t
        and not is_tainted(k, t)
        and ((r := retire_time(k, keys)) is None or r > t)
    ]
    return max(candidates, key=_order, default=None)


def publication_ended(
    key: KeyTimes, keys: Iterable[KeyTimes], t: dt.datetime, max_token_ttl: dt.timedelta
) -> bool:
    """True once ``key`` can never be published again (tainted, or past its window)."""
    if is_tainted(key, t):
        return True
    retired = retire_time(key, keys)
    return retired is not None and t > retired + max_token_ttl


def prunable(keys: Sequence[KeyTimes], t: dt.datetime, max_token_ttl: dt.timedelta) -> list[str]:
    """Kids whose rows can be deleted at ``t`` without changing any other key's lifecycle.

    Those whose publication has ended - except a tainted key that retired a key
    still being published: its ``activate_time`` dates that key's last signature,
    so deleting it would stretch (or, with no other successor, reopen) that
    key's publication and signing.
    """
    ended = {k.kid for k in keys if publication_ended(k, keys, t, max_token_ttl)}
    for key in keys:
        successor = retired_by(key, keys)
        if key.kid not in ended and successor is not None:
            ended.discard(successor.kid)
    return sorted(ended)


def is_published(
    key: KeyTimes, keys: Iterable[KeyTimes], t: dt.datetime, max_token_ttl: dt.timedelta
) -> bool:
    if key.publish_time > t or is_tainted(key, t):
        return False
    retired = retire_time(key, keys)
    return retired is None or t <= retired + max_token_ttl


def state(key: KeyTimes, keys: Sequence[KeyTimes], t: dt.datetime) -> KeyState:
    if is_tainted(key, t):
        return "tainted"
    if key.activate_time > t:
        return "pending"
    signer = active_signer(keys, t)
    return "active" if signer is not None and signer.kid == key.kid else "retired"
