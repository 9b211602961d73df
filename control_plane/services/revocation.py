"""Bulk revocation, and the revocation feed watchers subscribe to.

Each selected token is revoked together with every token exchanged from it
(RFC 7009 §2.1: "revoke ... other tokens based on the same authorization grant").
Every revocation is published to the org's feed; ``RevocationWatch`` streams it
from a sealed, org-bound cursor so a reconnecting watcher misses nothing.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

from control_plane.clock import Clock
from control_plane.domain import names
from control_plane.domain.errors import BarrierError, NotFound, field_error
from control_plane.domain.principals import Principal
from control_plane.storage import issued_tokens
from control_plane.storage.db import Database
from control_plane.storage.repositories import TenantRepository
from control_plane.tokens.revocation_feed import RevocationFeed
from control_plane.vault.barrier import Barrier

_TXN = re.compile(r"^[0-9a-f]{32}$")


class BulkRevocation:
    def __init__(self, db: Database, clock: Clock, feed: RevocationFeed | None = None) -> None:
        self.db = db
        self.clock = clock
        self.feed = feed

    async def revoke(
        self,
        principal: Principal,
        parent: str,
        *,
        user: str = "",
        agent: str = "",
        txn: str = "",
        all_tokens: bool = False,
    ) -> int:
        org_id = principal.scope_for(names.parse_org(parent, "parent"))  # permission first
        chosen = [bool(user), bool(agent), bool(txn), all_tokens]
        if sum(chosen) != 1:
            raise field_error("parent", "set exactly one of user, agent, txn, all_tokens")
        if user:
            u = names.parse_child(user, "users", "user")
            if u.org_id != org_id:
                raise NotFound()
            selector, value = "subject", user
        elif agent:
            a = names.parse_child(agent, "agents", "agent")
            if a.org_id != org_id:
                raise NotFound()
            selector, value = "client_id", agent
        elif txn:
            if not _TXN.fullmatch(txn):
                raise field_error("txn", "is not a chain id")
            selector, value = "txn", txn
        else:
            selector, value = "all", ""
        count = await issued_tokens.revoke_matching(
            self.db, org_id, selector, value, self.clock.now()
        )
        if count and self.feed is not None:
            self.feed.wake(org_id)  # this replica's watchers; others hear the NOTIFY
        return count


@dataclass(frozen=True, slots=True)
class FeedMessage:
    """What one WatchRevocations message carries."""

    jtis: list[str]
    revoke_time: dt.datetime | None
    expire_time: dt.datetime | None
    cursor: str
    synced: bool


MAX_CURSOR_LEN = 512


class RevocationWatch:
    """Streams an org's revocations: the backlog after a cursor, a ``synced`` mark, then live."""

    def __init__(
        self,
        db: Database,
        barrier: Barrier,
        clock: Clock,
        feed: RevocationFeed,
        *,
        heartbeat: float = 30.0,
        batch: int = 100,
    ) -> None:
        self.db = db
        self.barrier = barrier
        self.clock = clock
        self.feed = feed
        self.heartbeat = heartbeat
        self.batch = batch

    async def open(
        self, principal: Principal, parent: str, cursor: str
    ) -> AsyncIterator[FeedMessage]:
        """Check the caller and the cursor now, before the stream's first message."""
        org_id = principal.scope_for(names.parse_org(parent, "parent"))
        seq = await self._decode(org_id, cursor)
        async with self.db.org_tx(org_id) as s:
            if await TenantRepository(s, org_id).org() is None:
                raise NotFound()
        return self._stream(org_id, seq)

    async def _stream(self, org_id: str, seq: int) -> AsyncIterator[FeedMessage]:
        synced = False
        while True:
            ticket = self.feed.ticket(org_id)  # before the read: see RevocationFeed.ticket
            events = await issued_tokens.revocations_after(
                self.db, org_id, seq, self.clock.now(), self.batch
            )
            for event in events:
                seq = event.seq
                yield FeedMessage(
                    event.jtis,
                    event.revoke_time,
                    event.expire_time,
                    await self._encode(org_id, seq),
                    False,
                )
            if len(events) == self.batch:
                continue  # more backlog
            if not synced:
                synced = True
                yield FeedMessage([], None, None, await self._encode(org_id, seq), True)
            try:
                await asyncio.wait_for(ticket.wait(), self.heartbeat)
            except TimeoutError:
                # A heartbeat: the watcher knows the stream (and we the peer) is alive.
                yield FeedMessage([], None, None, await self._encode(org_id, seq), True)

    async def _encode(self, org_id: str, seq: int) -> str:
        blob = await self.barrier.seal(
            org_id, "revocation_events", "watch", "cursor", str(seq).encode()
        )
        return base64.urlsafe_b64encode(blob).decode().rstrip("=")

    async def _decode(self, org_id: str, cursor: str) -> int:
        if not cursor:
            return 0  # every revocation whose tokens have not all expired
        bad = field_error("cursor", "is not a revocation cursor of this organization")
        if len(cursor) > MAX_CURSOR_LEN:
            raise bad
        try:
            blob = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            body = await self.barrier.open(org_id, "revocation_events", "watch", "cursor", blob)
            seq = int(body.decode("ascii"))
        except (BarrierError, binascii.Error, ValueError, UnicodeDecodeError):
            raise bad from None
        if seq < 0:
            raise bad
        return seq
