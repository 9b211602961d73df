"""The revoked-token list a validator consults; filled by :class:`agentauth.RevocationWatcher`."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

__all__ = ["RevocationList"]


class RevocationList:
    """Revoked token ids with the time after which each may be forgotten. Thread-safe.

    Args:
        clock: returns the current time in epoch seconds (default ``time.time``).
        leeway: kept past a token's expiry, matching validators' clock-skew leeway.
    """

    def __init__(self, *, clock: Callable[[], float] | None = None, leeway: float = 30.0) -> None:
        self._clock: Callable[[], float] = clock if clock is not None else time.time
        self._leeway = float(leeway)
        self._revoked: dict[str, float] = {}
        self._lock = threading.Lock()
        self._synced_at: float | None = None
        self._next_prune = 0.0

    def __len__(self) -> int:
        return len(self._revoked)

    def __contains__(self, jti: object) -> bool:
        return jti in self._revoked  # one atomic dict lookup: the validator's hot path

    def add(self, jtis: Iterable[str], expire_time: float) -> None:
        """Record ``jtis`` as revoked until ``expire_time`` (epoch seconds) plus leeway."""
        until = float(expire_time) + self._leeway
        with self._lock:
            for jti in jtis:
                if until > self._revoked.get(jti, 0.0):
                    self._revoked[jti] = until
            now = self._clock()
            if now >= self._next_prune:
                self._next_prune = now + 60.0
                for jti in [j for j, t in self._revoked.items() if t < now]:
                    del self._revoked[jti]

    def mark_synced(self, at: float | None = None) -> None:
        """The list holds every revocation committed before ``at`` (default now)."""
        self._synced_at = self._clock() if at is None else at

    def mark_unsynced(self) -> None:
        self._synced_at = None

    @property
    def synced_at(self) -> float | None:
        """When the list was last confirmed current, or None before the first sync."""
        return self._synced_at

    def is_current(self, max_staleness: float, now: float | None = None) -> bool:
        synced = self._synced_at
        if synced is None:
            return False
        return (self._clock() if now is None else now) - synced <= max_staleness
