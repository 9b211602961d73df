"""Connected-account state changes: recorded with the change, streamed to watchers.

``record`` runs inside the transaction that changes the account: on PostgreSQL
it takes the org's account-events lock (so seq order is commit order), inserts
the event and NOTIFYs every replica at commit.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.storage.models import AccountEvent

if TYPE_CHECKING:
    from control_plane.storage.units import OrgTx

ACCOUNTS_CHANNEL = "agentauth_accounts"
RETENTION = dt.timedelta(days=7)


@dataclass(frozen=True, slots=True)
class Event:
    seq: int
    org_id: str
    account_id: str
    connector_id: str
    state: str
    state_reason: str
    event_time: dt.datetime


class AccountEvents:
    def __init__(self, tx: OrgTx, session: AsyncSession) -> None:
        self._tx = tx
        self._s = session
        self.org_id = tx.org_id

    async def record(
        self, account_id: str, connector_id: str, state: str, reason: str, now: dt.datetime
    ) -> None:
        await self._tx.lock("accounts")
        await self._s.execute(
            insert(AccountEvent).values(
                org_id=self.org_id,
                account_id=account_id,
                connector_id=connector_id,
                state=state,
                state_reason=reason,
                event_time=now,
            )
        )
        await self._tx.notify(ACCOUNTS_CHANNEL)
        await self._s.execute(
            delete(AccountEvent).where(
                AccountEvent.org_id == self.org_id, AccountEvent.event_time < now - RETENTION
            )
        )

    async def changed(self, row: Any, now: dt.datetime, state: str = "") -> None:
        """Record ``row``'s state (or ``state``, e.g. DELETED) for WatchConnectedAccounts."""
        await self.record(row.id, row.connector_id, state or row.state, row.state_reason, now)

    async def after(self, seq: int, limit: int = 100) -> list[Event]:
        rows = (
            await self._s.execute(
                select(AccountEvent)
                .where(AccountEvent.org_id == self.org_id, AccountEvent.seq > seq)
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

    async def latest(self) -> int:
        value = (
            await self._s.execute(
                select(func.max(AccountEvent.seq)).where(AccountEvent.org_id == self.org_id)
            )
        ).scalar()
        return int(value or 0)
