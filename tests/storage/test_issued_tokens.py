"""The issued-token record: group commit on PostgreSQL, plain inserts on SQLite."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import pytest

from control_plane.domain.errors import AlreadyExists, Unavailable
from control_plane.ids import new_id
from control_plane.storage import issued_tokens
from control_plane.storage.db import Database
from control_plane.storage.models import Organization
from control_plane.storage.repositories import PlatformRepository

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


async def _org(db: Database) -> str:
    org_id = new_id()
    async with db.platform_tx() as s:
        await PlatformRepository(s).add(
            Organization(id=org_id, display_name="o", state="ACTIVE", create_time=NOW,
                         update_time=NOW, access_token_ttl_seconds=300)
        )
    return org_id


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
