"""The issued-token record: written once per mint, read by introspection and revocation.

A mint writes exactly one row in one org-scoped transaction (one INSERT; the
row-level-security setting rides in the same transaction) and does no reads:
the policy and service-account lookups before it come from a short-lived cache.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, update

from control_plane.storage.db import Database
from control_plane.storage.models import IssuedToken
from control_plane.storage.repositories import TenantRepository


@dataclass(frozen=True, slots=True)
class IssuedTokenRecord:
    org_id: str
    jti: str
    subject: str
    client_id: str
    scopes: list[str]
    audiences: list[str]
    issue_time: dt.datetime
    expire_time: dt.datetime
    parent_jti: str | None = None
    root_jti: str | None = None
    txn: str | None = None


async def record(db: Database, rec: IssuedTokenRecord) -> None:
    """Durably record a token before it is handed out (fails closed)."""
    async with db.org_tx(rec.org_id) as s:
        await s.execute(
            insert(IssuedToken).values(
                org_id=rec.org_id,
                jti=rec.jti,
                subject=rec.subject,
                client_id=rec.client_id,
                scopes=rec.scopes,
                audiences=rec.audiences,
                issue_time=rec.issue_time,
                expire_time=rec.expire_time,
                revoke_time=None,
                parent_jti=rec.parent_jti,
                root_jti=rec.root_jti,
                txn=rec.txn,
            )
        )


async def get(db: Database, org_id: str, jti: str) -> IssuedToken | None:
    async with db.org_tx(org_id) as s:
        return await TenantRepository(s, org_id).find(IssuedToken, jti=jti)


async def revoke(db: Database, org_id: str, jti: str, now: dt.datetime) -> bool:
    """Mark one token revoked; True when this call revoked it."""
    async with db.org_tx(org_id) as s:
        result: Any = await s.execute(
            update(IssuedToken)
            .where(
                IssuedToken.org_id == org_id,
                IssuedToken.jti == jti,
                IssuedToken.revoke_time.is_(None),
            )
            .values(revoke_time=now)
        )
        return bool(result.rowcount)
