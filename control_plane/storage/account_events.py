"""Connected-account state changes: recorded with the change, streamed to watchers.

``record`` runs inside the transaction that changes the account: on PostgreSQL
it takes the org's account-events lock (so seq order is commit order), inserts
the event and NOTIFYs every replica at commit.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.storage.db import Database
from control_plane.storage.models import AccountEvent

ACCOUNTS_CHANNEL = "agentauth_accounts"
RETENTION = dt.timedelta(days=7)


async def record(
    s: AsyncSession,
    db: Database,
    org_id: str,
    account_id: str,
    connector_id: str,
    state: str,
    reason: str,
    now: dt.datetime,
) -> None:
    await db.xact_lock(s, "agentauth.accounts:" + org_id)
    await s.execute(
        insert(AccountEvent).values(
            org_id=org_id,
            account_id=account_id,
            connector_id=connector_id,
            state=state,
            state_reason=reason,
            event_time=now,
        )
    )
    await db.notify(s, ACCOUNTS_CHANNEL, org_id)
    await s.execute(
        delete(AccountEvent).where(
            AccountEvent.org_id == org_id, AccountEvent.event_time < now - RETENTION
        )
    )


@dataclass(frozen=True, slots=True)
class Event:
    seq: int
    org_id: str
    account_id: str
    connector_id: str
    state: str
    state_reason: str
    event_time: dt.datetime


async def after(db: Database, org_id: str, seq: int, limit: int = 100) -> list[Event]:
    async with db.org_tx(org_id) as s:
        rows = (
            await s.execute(
                select(AccountEvent)
                .where(AccountEvent.org_id == org_id, AccountEvent.seq > seq)
                .order_by(AccountEvent.seq)
                .limit(limit)
            )
        ).scalars()
        return [
            Event(
                r.seq, r.org_id, r.account_id, r.connector_id, r.state, r.state_reason, r.event_time
            )
            for r in rows
        ]


async def latest(db: Database, org_id: str) -> int:
    from sqlalchemy import func

    async with db.org_tx(org_id) as s:
        value = (
            await s.execute(select(func.max(AccountEvent.seq)).where(AccountEvent.org_id == org_id))
        ).scalar()
    return int(value or 0)
