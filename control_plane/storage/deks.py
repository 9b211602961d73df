"""Wrapped data keys: ``system_deks`` (the platform's) and ``org_deks`` (one org's).

Rows hold *wrapped* keys and KEK version labels, never a usable key. Org rows
are tenant rows: they are reached only through that org's own transaction.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.storage.models import OrgDek, SystemDek

if TYPE_CHECKING:
    from control_plane.storage.units import OrgTx


@dataclass(frozen=True, slots=True)
class WrappedDek:
    version: int
    kek_version: str
    wrapped: bytes = b""

    def __repr__(self) -> str:
        return f"WrappedDek(v{self.version}, {self.kek_version!r})"


class _Deks:
    table: Any

    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    def _where(self) -> list[Any]:
        return []

    async def get(self, version: int | None) -> WrappedDek | None:
        """One DEK row; the newest when ``version`` is None."""
        t = self.table
        stmt = select(t.version, t.wrapped_dek, t.kek_version).where(*self._where())
        if version is None:
            stmt = stmt.order_by(t.version.desc()).limit(1)
        else:
            stmt = stmt.where(t.version == version)
        found = (await self._s.execute(stmt)).first()
        return None if found is None else WrappedDek(found[0], found[2], found[1])

    async def all(self, *, with_keys: bool = True) -> list[WrappedDek]:
        t = self.table
        found = await self._s.execute(
            select(t.version, t.wrapped_dek, t.kek_version)
            .where(*self._where())
            .order_by(t.version)
        )
        return [WrappedDek(v, kv, w if with_keys else b"") for v, w, kv in found.all()]

    async def insert(self, dek: WrappedDek, create_time: dt.datetime) -> None:
        await self._s.execute(
            insert(self.table).values(
                version=dek.version,
                wrapped_dek=dek.wrapped,
                kek_version=dek.kek_version,
                create_time=create_time,
                **self._values(),
            )
        )

    def _values(self) -> dict[str, Any]:
        return {}

    async def replace_wrapping(self, current: WrappedDek, kek_version: str, wrapped: bytes) -> bool:
        """Store a re-wrapped DEK if nobody beat us to it (conditional on the KEK
        version we read: a concurrent rotation makes this a no-op, not an overwrite)."""
        t = self.table
        result = cast(
            CursorResult[Any],
            await self._s.execute(
                update(t)
                .where(
                    *self._where(),
                    t.version == current.version,
                    t.kek_version == current.kek_version,
                )
                .values(wrapped_dek=wrapped, kek_version=kek_version)
            ),
        )
        return result.rowcount == 1


class SystemDeks(_Deks):
    table = SystemDek


class OrgDeks(_Deks):
    table = OrgDek

    def __init__(self, tx: OrgTx, session: AsyncSession) -> None:
        super().__init__(session)
        self.org_id = tx.org_id

    def _where(self) -> list[Any]:
        return [OrgDek.org_id == self.org_id]

    def _values(self) -> dict[str, Any]:
        return {"org_id": self.org_id}

    async def delete_all(self) -> None:
        """Delete every DEK of this org (in this org's own transaction, so that row-level
        security cannot turn the DELETE into a silent no-op)."""
        await self._s.execute(delete(OrgDek).where(OrgDek.org_id == self.org_id))
