"""Generic repositories: one per table, bound to a unit of work.

A :class:`TenantRepo` is opened by an :class:`~control_plane.storage.units.OrgTx`
for one org and cannot see another: every statement it builds carries
``org_id = :org`` (the first wall; the database's own wall stands behind it,
see :mod:`control_plane.storage.db`). A :class:`PlatformRepo` serves platform
tables only. Table-specific queries live in subclasses next to their tables.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Generic, TypeVar

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.storage.models import Base

M = TypeVar("M", bound=Base)
Cursor = tuple[dt.datetime, str]


def _after(model: Any, cursor: Cursor | None) -> Any:
    if cursor is None:
        return True
    t, i = cursor
    return or_(model.create_time > t, and_(model.create_time == t, model.id > i))


class TenantRepo(Generic[M]):
    """Rows of ``model`` belonging to one org."""

    model: type[M]

    def __init__(self, session: AsyncSession, org_id: str) -> None:
        self._s = session
        self.org_id = org_id

    @property
    def _m(self) -> Any:
        return self.model

    async def get(self, id_: str) -> M | None:
        stmt = select(self.model).where(self._m.org_id == self.org_id, self._m.id == id_)
        return (await self._s.execute(stmt)).scalar_one_or_none()

    async def get_for_update(self, id_: str) -> M | None:
        stmt = (
            select(self.model)
            .where(self._m.org_id == self.org_id, self._m.id == id_)
            .with_for_update()
        )
        return (await self._s.execute(stmt)).scalar_one_or_none()

    async def fields(self, id_: str, *names: str) -> Any | None:
        """A few columns of one row (hot paths: no ORM identity-map work)."""
        m = self._m
        stmt = select(*(getattr(m, n) for n in names)).where(m.org_id == self.org_id, m.id == id_)
        return (await self._s.execute(stmt)).first()

    async def find(self, **equals: Any) -> M | None:
        conds = [getattr(self._m, k) == v for k, v in equals.items()]
        stmt = select(self.model).where(self._m.org_id == self.org_id, *conds).limit(1)
        return (await self._s.execute(stmt)).scalar_one_or_none()

    async def all(self, **equals: Any) -> list[M]:
        conds = [getattr(self._m, k) == v for k, v in equals.items()]
        stmt = select(self.model).where(self._m.org_id == self.org_id, *conds)
        return list((await self._s.execute(stmt)).scalars())

    async def add(self, row: M) -> M:
        if getattr(row, "org_id", None) != self.org_id:
            raise ValueError("row belongs to another org than this repository")
        self._s.add(row)
        await self._s.flush()
        return row

    async def page(self, cursor: Cursor | None, limit: int, **equals: Any) -> list[M]:
        m = self._m
        conds = [getattr(m, k) == v for k, v in equals.items()]
        stmt = (
            select(self.model)
            .where(m.org_id == self.org_id, _after(m, cursor), *conds)
            .order_by(m.create_time, m.id)
            .limit(limit)
        )
        return list((await self._s.execute(stmt)).scalars())

    async def count(self, **equals: Any) -> int:
        conds = [getattr(self._m, k) == v for k, v in equals.items()]
        stmt = (
            select(func.count())
            .select_from(self.model)
            .where(self._m.org_id == self.org_id, *conds)
        )
        return int((await self._s.execute(stmt)).scalar() or 0)

    async def delete(self, id_: str) -> int:
        result: Any = await self._s.execute(
            delete(self.model).where(self._m.org_id == self.org_id, self._m.id == id_)
        )
        return int(result.rowcount or 0)

    async def delete_row(self, row: M) -> None:
        if getattr(row, "org_id", None) != self.org_id:
            raise ValueError("row belongs to another org than this repository")
        await self._s.delete(row)
        await self._s.flush()

    async def delete_all(self) -> int:
        result: Any = await self._s.execute(delete(self.model).where(self._m.org_id == self.org_id))
        return int(result.rowcount or 0)


class PlatformRepo(Generic[M]):
    """Rows of a platform table (never a tenant one)."""

    model: type[M]

    def __init__(self, session: AsyncSession) -> None:
        if "org_id" in self.model.__table__.c:
            raise TypeError("tenant tables are reached through an OrgTx")
        self._s = session

    @property
    def _m(self) -> Any:
        return self.model

    async def get(self, key: Any) -> M | None:
        return await self._s.get(self.model, key)

    async def find(self, **equals: Any) -> M | None:
        conds = [getattr(self._m, k) == v for k, v in equals.items()]
        stmt = select(self.model).where(*conds).limit(1)
        return (await self._s.execute(stmt)).scalar_one_or_none()

    async def fields(self, id_: str, *names: str) -> Any | None:
        m = self._m
        stmt = select(*(getattr(m, n) for n in names)).where(m.id == id_)
        return (await self._s.execute(stmt)).first()

    async def add(self, row: M) -> M:
        self._s.add(row)
        await self._s.flush()
        return row

    async def page(self, cursor: Cursor | None, limit: int) -> list[M]:
        m = self._m
        stmt = (
            select(self.model).where(_after(m, cursor)).order_by(m.create_time, m.id).limit(limit)
        )
        return list((await self._s.execute(stmt)).scalars())

    async def delete_row(self, row: M) -> None:
        await self._s.delete(row)
        await self._s.flush()

    async def exists(self) -> bool:
        """Whether the table has any row at all."""
        return (await self._s.execute(select(self.model).limit(1))).first() is not None
