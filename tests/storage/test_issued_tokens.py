"""The issued-token record: group commit on PostgreSQL, plain inserts on SQLite."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import pytest

from control_plane.domain.errors import AlreadyExists, Unavailable
from control_plane.ids import new_id
from control_plane.storage import issued_tokens as _storage
from control_plane.storage.db import Database
from tests.scopes import add_org, org_session, scope

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


class _Writer:
    def __init__(self, db: Database) -> None:
        self.inner = _storage.IssuedTokenWriter(db)

    async def record(self, rec: _storage.IssuedTokenRecord) -> None:
        await self.inner.record(scope(rec.org_id), rec)


class _ByOrgId:
    """The storage functions with an org id where they take an OrgScope (test shorthand)."""

    IssuedTokenRecord = _storage.IssuedTokenRecord
    ParentRevoked = _storage.ParentRevoked
    IssuedTokenWriter = _Writer
    REVOCATION_LOCK = _storage.REVOCATION_LOCK

    async def get(self, db: Database, org: str, jti: str) -> object:
        return await _storage.get(db, scope(org), jti)

    async def active_chain(self, db: Database, org: str, jti: str) -> bool:
        return await _storage.active_chain(db, scope(org), jti)

    async def revoke_tree(self, db: Database, org: str, jti: str, now: dt.datetime) -> int:
        return await _storage.revoke_tree(db, scope(org), jti, now)

    async def revocations_after(
        self, db: Database, org: str, seq: int, now: dt.datetime
    ) -> list[_storage.PublishedRevocation]:
        return await _storage.revocations_after(db, scope(org), seq, now)

    def revocation_lock_key(self, org: str) -> str:
        return f"agentauth.{_storage.REVOCATION_LOCK}:{org}"


issued_tokens = _ByOrgId()


async def _org(db: Database) -> str:
    return await add_org(db, new_id(), NOW)


def _rec(org_id: str, jti: str | None = None) -> issued_tokens.IssuedTokenRecord:
    return issued_tokens.IssuedTokenRecord(
        org_id=org_id, jti=jti or uuid.uuid4().hex, subject="orgs/x/serviceAccounts/y",
        client_id="orgs/x/agents/z", scopes=["a", "b"], audiences=["https://api"],
        issue_time=NOW, expire_time=NOW + dt.timedelta(minutes=5),
    )


async def test_concurrent_records_are_all_durable_and_org_scoped(db: Database) -> None:
    org_a, org_b = await _org(db), await _org(db)
    writer = issued_tokens.IssuedTokenWriter(db)
    recs = [_rec(org_a if i % 2 else org_b) for i in range(60)]
    await asyncio.gather(*(writer.record(r) for r in recs))
    for r in recs:
        row = await issued_tokens.get(db, r.org_id, r.jti)
        assert row is not None and row.scopes == ["a", "b"] and row.expire_time == r.expire_time
        other = org_b if r.org_id == org_a else org_a
        assert await issued_tokens.get(db, other, r.jti) is None


async def test_a_bad_row_fails_alone_and_the_rest_of_the_batch_lands(db: Database) -> None:
    org = await _org(db)
    writer = issued_tokens.IssuedTokenWriter(db)
    first = _rec(org, "dup-jti")
    await writer.record(first)
    good = [_rec(org) for _ in range(5)]
    results = await asyncio.gather(
        *(writer.record(r) for r in good), writer.record(_rec(org, "dup-jti")),
        return_exceptions=True,
    )
    assert results[:5] == [None] * 5
    assert isinstance(results[5], AlreadyExists)
    for r in good:
        assert await issued_tokens.get(db, org, r.jti) is not None


async def test_record_for_missing_org_fails_closed(db: Database) -> None:
    writer = issued_tokens.IssuedTokenWriter(db)
    with pytest.raises((AlreadyExists, Unavailable)):  # never a silent success
        await writer.record(_rec(new_id()))


async def test_revoke_marks_once(db: Database) -> None:
    org = await _org(db)
    rec = _rec(org)
    await issued_tokens.IssuedTokenWriter(db).record(rec)
    assert await issued_tokens.revoke_tree(db, org, rec.jti, NOW) == 1
    assert await issued_tokens.revoke_tree(db, org, rec.jti, NOW) == 0
    row = await issued_tokens.get(db, org, rec.jti)
    assert row is not None and row.revoke_time == NOW


# ------------------------------------------------- revocation and its feed


def _child(parent: issued_tokens.IssuedTokenRecord, jti: str | None = None,
           minutes: int = 4) -> issued_tokens.IssuedTokenRecord:
    return issued_tokens.IssuedTokenRecord(
        org_id=parent.org_id, jti=jti or uuid.uuid4().hex, subject=parent.subject,
        client_id="orgs/x/agents/sub", scopes=["a"], audiences=["https://api"],
        issue_time=NOW, expire_time=NOW + dt.timedelta(minutes=minutes),
        parent_jti=parent.jti, root_jti=parent.root_jti or parent.jti, txn="t" * 32,
    )


async def test_revocation_publishes_the_tree_once_in_order(db: Database) -> None:
    org = await _org(db)
    writer = issued_tokens.IssuedTokenWriter(db)
    root = _rec(org)
    await writer.record(root)
    child = _child(root)
    await writer.record(child)
    grandchild = _child(child, minutes=3)
    await writer.record(grandchild)
    other = _rec(org)
    await writer.record(other)

    assert await issued_tokens.revoke_tree(db, org, child.jti, NOW) == 2
    assert await issued_tokens.revoke_tree(db, org, child.jti, NOW) == 0  # nothing new
    assert await issued_tokens.revoke_tree(db, org, other.jti, NOW) == 1
    events = await issued_tokens.revocations_after(db, org, 0, NOW)
    assert [sorted(e.jtis) for e in events] == [sorted([child.jti, grandchild.jti]), [other.jti]]
    assert events[0].seq < events[1].seq
    assert events[0].expire_time == child.expire_time  # the latest expiry in the event
    assert await issued_tokens.revocations_after(db, org, events[0].seq, NOW) == events[1:]
    # Another org's feed is empty; after every token expired, so is this one.
    assert await issued_tokens.revocations_after(db, await _org(db), 0, NOW) == []
    later = NOW + dt.timedelta(hours=1)
    assert await issued_tokens.revocations_after(db, org, 0, later) == []
    assert await issued_tokens.active_chain(db, org, root.jti)


async def test_a_child_of_a_revoked_parent_is_never_recorded(db: Database) -> None:
    org = await _org(db)
    writer = issued_tokens.IssuedTokenWriter(db)
    parent = _rec(org)
    await writer.record(parent)
    await issued_tokens.revoke_tree(db, org, parent.jti, NOW)
    child = _child(parent)
    with pytest.raises(issued_tokens.ParentRevoked):
        await writer.record(child)
    assert await issued_tokens.get(db, org, child.jti) is None
    # In a group-commit batch, only the orphan fails; its neighbours land.
    fine = [_rec(org) for _ in range(5)]
    results = await asyncio.gather(
        *(writer.record(r) for r in [*fine, _child(parent)]), return_exceptions=True
    )
    assert results[:5] == [None] * 5 and isinstance(results[5], issued_tokens.ParentRevoked)


@pytest.mark.postgres_only
async def test_a_child_racing_a_revocation_waits_for_it_and_is_refused(db: Database) -> None:
    """The revocation holds the org's lock from before it computes the tree until
    commit; a child recorded meanwhile waits, then sees its parent revoked."""
    if not db.is_postgres:
        pytest.skip("SQLite has a single writer: no interleaving to test")
    from sqlalchemy import text

    org = await _org(db)
    writer = issued_tokens.IssuedTokenWriter(db)
    parent = _rec(org)
    await writer.record(parent)
    child = _child(parent)
    async with org_session(db, org) as s:
        await s.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
                        {"k": issued_tokens.revocation_lock_key(org)})
        await s.execute(text("UPDATE issued_tokens SET revoke_time = now() WHERE jti = :j"),
                        {"j": parent.jti})
        racing = asyncio.ensure_future(writer.record(child))
        await asyncio.sleep(0.5)
        assert not racing.done()  # blocked behind the revocation in flight
    with pytest.raises(issued_tokens.ParentRevoked):
        await asyncio.wait_for(racing, 10)
    assert await issued_tokens.get(db, org, child.jti) is None
