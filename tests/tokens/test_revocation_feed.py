"""RevocationFeed: wake-ups across replicas by LISTEN/NOTIFY, catch-up after a lost
connection, and the periodic poll. Two feeds on one database stand for two replicas."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import psycopg
import pytest

from control_plane.ids import new_id
from control_plane.storage import issued_tokens
from control_plane.storage.db import Database
from control_plane.storage.db import libpq_url
from tests.scopes import add_org, scope
from control_plane.tokens.revocation_feed import IDENTITY_CHANNEL, RevocationFeed
from tests.conftest import PG_ADMIN_URL

NOW = dt.datetime.now(dt.UTC)


async def _org_with_token(db: Database) -> str:
    org_id = await add_org(db, new_id(), NOW)
    await issued_tokens.IssuedTokenWriter(db).record(scope(org_id), issued_tokens.IssuedTokenRecord(
        org_id=org_id, jti=uuid.uuid4().hex, subject="orgs/x/users/y", client_id="orgs/x/agents/z",
        scopes=[], audiences=["https://api"], issue_time=NOW,
        expire_time=NOW + dt.timedelta(minutes=5)))
    return org_id


MakeFeed = Callable[..., Awaitable[RevocationFeed]]


@pytest.fixture
async def make_feed(db: Database) -> AsyncIterator[MakeFeed]:
    """Started feeds on ``db`` (each one a replica), stopped afterwards."""
    started: list[RevocationFeed] = []

    async def make(**kw: Any) -> RevocationFeed:
        feed = RevocationFeed(db, **kw)
        await feed.start()
        started.append(feed)
        return feed

    yield make
    for feed in started:
        await feed.stop()


async def test_a_revocation_wakes_watchers_on_every_replica(db: Database, make_feed: MakeFeed) -> None:
    here, there = await make_feed(poll_interval=3600), await make_feed(poll_interval=3600)
    org = await _org_with_token(db)
    tickets = [here.ticket(org), there.ticket(org)]
    other = there.ticket(await _org_with_token(db))
    await issued_tokens.revoke_matching(db, scope(org), "all", "", NOW)
    if db.is_postgres:  # by NOTIFY, long before the hour-long poll
        await asyncio.wait_for(asyncio.gather(*(t.wait() for t in tickets)), 2)
        assert not other.is_set()  # another org's watchers sleep on
    else:  # one process: the service wakes its own feed (no NOTIFY in SQLite)
        assert not any(t.is_set() for t in tickets)
        here.wake(org)
        assert tickets[0].is_set()


async def test_the_poll_wakes_everyone_even_without_a_notification(db: Database, make_feed: MakeFeed) -> None:
    feed = await make_feed(poll_interval=0.05)
    ticket = feed.ticket(new_id())
    await asyncio.wait_for(ticket.wait(), 2)


@pytest.mark.postgres_only
async def test_identity_changes_reach_the_other_replica(db: Database, make_feed: MakeFeed) -> None:
    if not db.is_postgres:
        pytest.skip("LISTEN/NOTIFY is PostgreSQL")
    seen: list[str] = []
    arrived = asyncio.Event()

    def on_change(org_id: str) -> None:
        seen.append(org_id)
        arrived.set()

    here = await make_feed(poll_interval=3600)
    await make_feed(poll_interval=3600, on_identity_changed=on_change)
    org = new_id()
    here.identity_changed(org)
    await asyncio.wait_for(arrived.wait(), 2)
    assert seen == [org]
    # A payload that is not an org id (anyone may NOTIFY) is ignored, not fatal.
    with psycopg.connect(libpq_url(db.url), autocommit=True) as conn:
        conn.execute("SELECT pg_notify(%s, %s)", (IDENTITY_CHANNEL, "'; DROP TABLE x; --"))
    arrived.clear()
    here.identity_changed(org)
    await asyncio.wait_for(arrived.wait(), 2)
    assert seen == [org, org]


@pytest.mark.postgres_only
async def test_a_lost_listener_reconnects_and_catches_up(db: Database, make_feed: MakeFeed) -> None:
    """NOTIFYs sent while the listener is down are lost: after reconnecting the
    feed wakes every watcher so they re-read the database."""
    if not db.is_postgres:
        pytest.skip("LISTEN/NOTIFY is PostgreSQL")
    feed = await make_feed(poll_interval=3600)
    assert feed.listening.is_set()
    ticket = feed.ticket(new_id())
    dbname = db.url.rsplit("/", 1)[1]
    with psycopg.connect(libpq_url(PG_ADMIN_URL), autocommit=True) as admin:
        killed = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND query LIKE 'LISTEN%%'",
            (dbname,),
        ).fetchone()
    assert killed is not None and killed[0] >= 1
    await asyncio.wait_for(ticket.wait(), 5)
    await asyncio.wait_for(feed.listening.wait(), 5)
