"""Reads and writes of wrapped DEK rows: ``system_deks`` and ``org_deks``.

The barrier's only contact with SQL. Rows hold *wrapped* keys and KEK version
labels, never a usable key. Org rows are tenant rows under row-level security:
on PostgreSQL they are visible only inside that org's ``org_tx``, so every
org access here runs in (or checks) the org's own transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.domain.errors import BarrierError
from control_plane.storage.db import Database
from control_plane.storage.models import Organization, OrgDek, SystemDek

__all__ = ["PLATFORM", "DekRow", "DekStore"]

PLATFORM = "platform"


@dataclass(frozen=True, slots=True)
class DekRow:
    scope: str
    version: int
    kek_version: str
    wrapped: bytes = b""

    def __repr__(self) -> str:
        return f"DekRow({self.scope!r}, v{self.version}, {self.kek_version!r})"


def _table(scope: str) -> Any:
    # Any: both mapped classes have version / wrapped_dek / kek_version columns.
    return SystemDek if scope == PLATFORM else OrgDek


class DekStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def tx(self, scope: str) -> AbstractAsyncContextManager[AsyncSession]:
        """The transaction kind that can see ``scope``'s DEK rows."""
        return self._db.platform_tx() if scope == PLATFORM else self._db.org_tx(scope)

    @asynccontextmanager
    async def use(self, scope: str, session: AsyncSession | None) -> AsyncIterator[AsyncSession]:
        """The caller's session if given (same connection, sees its own rows), else our own."""
        if session is not None:
            yield session
            return
        async with self.tx(scope) as own:
            yield own

    async def get(self, session: AsyncSession, scope: str, version: int | None) -> DekRow | None:
        """One DEK row; the newest when ``version`` is None."""
        table = _table(scope)
        stmt = select(table.version, table.wrapped_dek, table.kek_version)
        if scope != PLATFORM:
            stmt = stmt.where(OrgDek.org_id == scope)
        if version is None:
            stmt = stmt.order_by(table.version.desc()).limit(1)
        else:
            stmt = stmt.where(table.version == version)
        found = (await session.execute(stmt)).first()
        if found is None:
            return None
        return DekRow(scope, found[0], found[2], found[1])

    async def system_rows(self, session: AsyncSession) -> list[DekRow]:
        found = await session.execute(
            select(SystemDek.version, SystemDek.wrapped_dek, SystemDek.kek_version).order_by(
                SystemDek.version
            )
        )
        return [DekRow(PLATFORM, v, kv, wrapped) for v, wrapped, kv in found.all()]

    async def has_system_rows(self) -> bool:
        async with self._db.platform_tx() as session:
            return (await session.execute(select(SystemDek.version).limit(1))).first() is not None

    async def all_rows(self) -> list[DekRow]:
        """Every DEK (without wrapped bytes): system first, then org by org in id order.

        The org list comes from the platform table; each org's rows are read in
        that org's own transaction, the only place RLS shows them.
        """
        async with self._db.platform_tx() as session:
            rows = [
                DekRow(PLATFORM, r.version, r.kek_version) for r in await self.system_rows(session)
            ]
            org_ids = list(
                (await session.execute(select(Organization.id).order_by(Organization.id))).scalars()
            )
        for org_id in org_ids:
            async with self._db.org_tx(org_id) as session:
                found = await session.execute(
                    select(OrgDek.version, OrgDek.kek_version)
                    .where(OrgDek.org_id == org_id)
                    .order_by(OrgDek.version)
                )
                rows.extend(DekRow(org_id, version, kv) for version, kv in found.all())
        return rows

    async def insert(
        self,
        session: AsyncSession,
        row: DekRow,
        create_time: dt.datetime,
    ) -> None:
        values: dict[str, Any] = {
            "version": row.version,
            "wrapped_dek": row.wrapped,
            "kek_version": row.kek_version,
            "create_time": create_time,
        }
        if row.scope == PLATFORM:
            await session.execute(insert(SystemDek).values(**values))
        else:
            await session.execute(insert(OrgDek).values(org_id=row.scope, **values))

    async def replace_wrapping(self, current: DekRow, kek_version: str, wrapped: bytes) -> bool:
        """Store a re-wrapped DEK in its own committed transaction, if nobody beat us to it.

        Conditional on the KEK version we read: a concurrent rotation that
        already moved the row makes this a no-op (False) instead of an overwrite.
        """
        table = _table(current.scope)
        stmt = (
            update(table)
            .where(table.version == current.version, table.kek_version == current.kek_version)
            .values(wrapped_dek=wrapped, kek_version=kek_version)
        )
        if current.scope != PLATFORM:
            stmt = stmt.where(OrgDek.org_id == current.scope)
        async with self.tx(current.scope) as session:
            result = cast(CursorResult[Any], await session.execute(stmt))
            return result.rowcount == 1

    async def delete_org(self, session: AsyncSession, org_id: str) -> None:
        """Delete every DEK of the org, in the caller's transaction for that org."""
        if self._db.is_postgres:
            # Under RLS a DELETE from any other transaction matches no rows and
            # "succeeds": the org would look shredded without being so.
            current = await session.scalar(text("SELECT current_setting('app.org_id', true)"))
            if current != org_id:
                raise BarrierError("org keys can only be destroyed in the org's own transaction")
        await session.execute(delete(OrgDek).where(OrgDek.org_id == org_id))
