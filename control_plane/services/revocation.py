"""Bulk revocation, and the revocation feed watchers subscribe to.

Each selected token is revoked together with every token exchanged from it
(RFC 7009 §2.1: "revoke ... other tokens based on the same authorization grant").
Every revocation is published to the org's feed; ``RevocationWatch`` streams it
from a sealed, org-bound cursor so a reconnecting watcher misses nothing.
"""

from __future__ import annotations

import re

from control_plane.clock import Clock
from control_plane.domain import names
from control_plane.domain.errors import NotFound, field_error
from control_plane.domain.principals import Principal
from control_plane.domain.scope import OrgScope
from control_plane.services.feed_watch import FeedWatch
from control_plane.storage import issued_tokens
from control_plane.storage.db import Database
from control_plane.tokens.revocation_feed import REVOCATIONS, RevocationFeed

_TXN = re.compile(r"^[0-9a-f]{32}$")


class BulkRevocation:
    def __init__(self, db: Database, clock: Clock, feed: RevocationFeed) -> None:
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
        scope = principal.scope_for(names.parse_org(parent, "parent"))  # permission first
        org_id = scope.org_id
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
            self.db, scope, selector, value, self.clock.now()
        )
        if count:
            self.feed.wake(org_id)  # this replica's watchers; others hear the NOTIFY
        return count


class RevocationWatch(FeedWatch[issued_tokens.PublishedRevocation]):
    """An org's revocations; without a cursor, every revocation of unexpired tokens."""

    table = "revocation_events"
    topic = REVOCATIONS

    async def fetch(
        self, scope: OrgScope, seq: int, limit: int
    ) -> list[tuple[int, issued_tokens.PublishedRevocation]]:
        events = await issued_tokens.revocations_after(self.db, scope, seq, self.clock.now(), limit)
        return [(e.seq, e) for e in events]
