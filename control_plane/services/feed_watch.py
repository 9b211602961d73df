"""Streaming an org's append-only event feed from a sealed, org-bound cursor.

A watch sends the backlog after the cursor, then one ``synced`` mark, then each
event as it commits (woken by :class:`~control_plane.tokens.revocation_feed.RevocationFeed`
on any replica), with a ``synced`` heartbeat when nothing happens. Cursors are
sealed by the barrier with the org and the feed in the AAD: opaque, and useless
in another org or on another feed. Subclasses say where events come from.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from control_plane.clock import Clock
from control_plane.domain import names
from control_plane.domain.errors import BarrierError, NotFound, field_error
from control_plane.domain.principals import Principal
from control_plane.domain.scope import OrgScope
from control_plane.storage.db import Database
from control_plane.tokens.revocation_feed import RevocationFeed
from control_plane.vault.barrier import Barrier

E = TypeVar("E")
MAX_CURSOR_LEN = 512


@dataclass(frozen=True, slots=True)
class WatchItem(Generic[E]):
    event: E | None  # None on synced marks and heartbeats
    cursor: str
    synced: bool


class FeedWatch(Generic[E]):
    table: str  # the feed's table: part of the cursor's AAD
    topic: str  # RevocationFeed topic that wakes it

    def __init__(
        self,
        db: Database,
        barrier: Barrier,
        clock: Clock,
        feed: RevocationFeed,
        *,
        heartbeat: float = 30.0,
        batch: int = 100,
        on_live: Callable[[E], None] | None = None,
    ) -> None:
        self.db = db
        self.barrier = barrier
        self.clock = clock
        self.feed = feed
        self.heartbeat = heartbeat
        self.batch = batch
        # Told of each event delivered after the backlog (the feed's lag is measured
        # on these: a backlog event's age is how long the watcher was away).
        self.on_live = on_live

    async def fetch(self, scope: OrgScope, seq: int, limit: int) -> list[tuple[int, E]]:
        """Events after ``seq``, oldest first, with their seq."""
        raise NotImplementedError

    async def start_seq(self, scope: OrgScope) -> int:
        """Where a watch without a cursor starts (0: the whole retained backlog)."""
        return 0

    async def open(
        self, principal: Principal, parent: str, cursor: str
    ) -> AsyncIterator[WatchItem[E]]:
        """Check the caller and the cursor now, before the stream's first message."""
        scope = principal.scope_for(names.parse_org(parent, "parent"))
        seq = await self._decode(scope, cursor) if cursor else None
        async with self.db.org_tx(scope) as tx:
            if not await tx.org_exists():
                raise NotFound()
        if seq is None:
            seq = await self.start_seq(scope)
        return self._stream(scope, seq)

    async def _stream(self, scope: OrgScope, seq: int) -> AsyncIterator[WatchItem[E]]:
        synced = False
        while True:
            ticket = self.feed.ticket(scope.org_id, self.topic)  # before the read
            events = await self.fetch(scope, seq, self.batch)
            for event_seq, event in events:
                seq = event_seq
                if synced and self.on_live is not None:
                    self.on_live(event)
                yield WatchItem(event, await self._encode(scope, seq), False)
            if len(events) == self.batch:
                continue  # more backlog
            if not synced:
                synced = True
                yield WatchItem(None, await self._encode(scope, seq), True)
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
                # cancellation that races the event, and this loop would then run on
                # after its RPC is gone (seen as a hang at server shutdown).
                async with asyncio.timeout(self.heartbeat):
                    await ticket.wait()
            except TimeoutError:
                # A heartbeat: the watcher knows the stream (and we the peer) is alive.
                yield WatchItem(None, await self._encode(scope, seq), True)

    async def _encode(self, scope: OrgScope, seq: int) -> str:
        blob = await self.barrier.seal(scope, self.table, "watch", "cursor", str(seq).encode())
        return base64.urlsafe_b64encode(blob).decode().rstrip("=")

    async def _decode(self, scope: OrgScope, cursor: str) -> int:
        bad = field_error("cursor", "is not a cursor of this feed and organization")
        if len(cursor) > MAX_CURSOR_LEN:
            raise bad
        try:
            blob = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            body = await self.barrier.open(scope, self.table, "watch", "cursor", blob)
            seq = int(body.decode("ascii"))
        except (BarrierError, binascii.Error, ValueError, UnicodeDecodeError):
            raise bad from None
        if seq < 0:
            raise bad
        return seq
