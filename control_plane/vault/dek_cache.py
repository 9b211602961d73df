"""A small LRU whose entries expire on the injected clock (the barrier's DEK cache).

Bounded both ways on purpose (perf_security.md §B2.5 E6): the size caps memory
and how many unwrapped keys sit in one process; the TTL caps how long a replica
keeps a DEK that another replica has since shredded or that a KMS outage
should have made unavailable.
"""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

from control_plane.clock import Clock

__all__ = ["TtlLru"]

K = TypeVar("K")
V = TypeVar("V")


class TtlLru(Generic[K, V]):
    """``size`` or ``ttl`` of 0 disables caching altogether."""

    def __init__(self, size: int, ttl: float, clock: Clock) -> None:
        if size < 0 or ttl < 0:
            raise ValueError("cache size and TTL must not be negative")
        self._size = size
        self._ttl = dt.timedelta(seconds=ttl)
        self._clock = clock
        self._items: OrderedDict[K, tuple[V, dt.datetime]] = OrderedDict()

    def get(self, key: K) -> V | None:
        item = self._items.get(key)
        if item is None:
            return None
        value, deadline = item
        if self._clock.now() >= deadline:
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        if self._size == 0 or not self._ttl:
            return
        self._items[key] = (value, self._clock.now() + self._ttl)
        self._items.move_to_end(key)
        while len(self._items) > self._size:
            self._items.popitem(last=False)

    def discard(self, match: Callable[[K], bool]) -> None:
        for key in [k for k in self._items if match(k)]:
            del self._items[key]

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        # Values may be key material: never render them.
        return f"<TtlLru entries={len(self._items)} size={self._size}>"
