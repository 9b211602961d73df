"""Organizations: the platform table every tenant row hangs off."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.storage import models as m
from control_plane.storage.repositories import PlatformRepo

# Rows deleted explicitly before the org's own row (the rest go by ON DELETE CASCADE).
_TENANT_ROWS: tuple[Any, ...] = (m.OrgApiKey, m.ServiceAccount, m.Agent, m.User)


class Organizations(PlatformRepo[m.Organization]):
    model = m.Organization

    async def ids(self) -> list[str]:
        """Every org id, in id order (platform jobs visit each org in turn)."""
        found = await self._s.execute(select(m.Organization.id).order_by(m.Organization.id))
        return list(found.scalars())


class OrgRow:
    """An org transaction's access to its own ``organizations`` row."""

    def __init__(self, session: AsyncSession, org_id: str) -> None:
        self._s = session
        self.org_id = org_id

    async def get(self) -> m.Organization | None:
        return await self._s.get(m.Organization, self.org_id)

    async def exists(self) -> bool:
        found = await self._s.execute(
            select(m.Organization.id).where(m.Organization.id == self.org_id)
        )
        return found.first() is not None

    async def create(self, row: m.Organization) -> None:
        if row.id != self.org_id:
            raise ValueError("an org transaction creates only its own org")
        self._s.add(row)
        await self._s.flush()

    async def delete_everything(self) -> None:
        for model in _TENANT_ROWS:
            await self._s.execute(delete(model).where(model.org_id == self.org_id))
        await self._s.execute(delete(m.Organization).where(m.Organization.id == self.org_id))
