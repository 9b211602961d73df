"""Repositories. A TenantRepository is opened for one org and cannot see another.

Every query it issues carries ``org_id = :org`` (the first wall); on PostgreSQL
the transaction it runs in also has ``app.org_id`` set, so row-level security
filters anything a query forgets (the second wall).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, TypeVar

from sqlalchemy import and_, delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.storage.models import Base, Organization

M = TypeVar("M", bound=Base)
Cursor = tuple[dt.datetime, str]


def _after(model: Any, cursor: Cursor | None) -> Any:
    if cursor is None:
        return True
    t, i = cursor
    return or_(model.create_time > t, and_(model.create_time == t, model.id > i))


class TenantRepository:
    def __init__(self, session: AsyncSession, org_id: str) -> None:
        self.session = session
        self.org_id = org_id

    async def org(self) -> Organization | None:
        return await self.session.get(Organization, self.org_id)

    async def get(self, model: type[M], id_: str) -> M | None:
        m: Any = model
        stmt = select(model).where(m.org_id == self.org_id, m.id == id_)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def fields(self, model: type[M], id_: str, *names: str) -> Any | None:
        """A few columns of one row (hot paths: no ORM identity-map work)."""
        m: Any = model
        stmt = select(*(getattr(m, n) for n in names)).where(m.org_id == self.org_id, m.id == id_)
        return (await self.session.execute(stmt)).first()

    async def get_for_update(self, model: type[M], id_: str) -> M | None:
        m: Any = model
        stmt = select(model).where(m.org_id == self.org_id, m.id == id_).with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def find(self, model: type[M], **equals: Any) -> M | None:
        m: Any = model
        conds = [getattr(m, k) == v for k, v in equals.items()]
        stmt = select(model).where(m.org_id == self.org_id, *conds)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def add(self, row: M) -> M:
        if getattr(row, "org_id", None) != self.org_id:
            raise ValueError("row belongs to another org than this repository")
        self.session.add(row)
        await self.session.flush()
        return row

    async def page(
        self, model: type[M], cursor: Cursor | None, limit: int, **equals: Any
    ) -> list[M]:
        m: Any = model
        conds = [getattr(m, k) == v for k, v in equals.items()]
        stmt = (
            select(model)
            .where(m.org_id == self.org_id, _after(m, cursor), *conds)
            .order_by(m.create_time, m.id)
            .limit(limit)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def delete(self, model: type[M], id_: str) -> int:
        m: Any = model
        result: Any = await self.session.execute(
            delete(model).where(m.org_id == self.org_id, m.id == id_)
        )
        return int(result.rowcount or 0)

    async def delete_all(self, model: type[M]) -> int:
        m: Any = model
        result: Any = await self.session.execute(delete(model).where(m.org_id == self.org_id))
        return int(result.rowcount or 0)


class PlatformRepository:
    """Platform tables only (organizations, platform keys, signing keys)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, model: type[M], id_: str) -> M | None:
        return await self.session.get(model, id_)

    async def find(self, model: type[M], **equals: Any) -> M | None:
        m: Any = model
        conds = [getattr(m, k) == v for k, v in equals.items()]
        return (await self.session.execute(select(model).where(*conds))).scalar_one_or_none()

    async def fields(self, model: type[M], id_: str, *names: str) -> Any | None:
        m: Any = model
        stmt = select(*(getattr(m, n) for n in names)).where(m.id == id_)
        return (await self.session.execute(stmt)).first()

    async def add(self, row: M) -> M:
        if "org_id" in row.__table__.c:
            raise ValueError("tenant rows go through a TenantRepository")
        self.session.add(row)
        await self.session.flush()
        return row

    async def page(self, model: type[M], cursor: Cursor | None, limit: int) -> list[M]:
        m: Any = model
        stmt = select(model).where(_after(m, cursor)).order_by(m.create_time, m.id).limit(limit)
        return list((await self.session.execute(stmt)).scalars())

    async def delete(self, model: type[M], id_: str) -> int:
        m: Any = model
        result: Any = await self.session.execute(delete(model).where(m.id == id_))
        return int(result.rowcount or 0)

    async def exists(self, model: type[M]) -> bool:
        """Whether the table has any row at all."""
        stmt = select(model).limit(1)
        return (await self.session.execute(stmt)).first() is not None
