"""Signing-key rows (platform table). Private keys arrive here already sealed."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.storage.models import SigningKey

if TYPE_CHECKING:
    from control_plane.storage.units import PlatformTx

#: One advisory-lock id for all signing-key mutations (stable across processes).
_LOCK_ID = int.from_bytes(
    hashlib.sha256(b"agentauth/signing_keys").digest()[:8], "big", signed=True
)


@dataclass(frozen=True, slots=True)
class KeyTimes:
    kid: str
    publish_time: dt.datetime
    activate_time: dt.datetime
    taint_time: dt.datetime | None


@dataclass(frozen=True, slots=True)
class KeyRow:
    kid: str
    alg: str
    public_jwk: str
    sealed_private_key: bytes
    create_time: dt.datetime
    publish_time: dt.datetime
    activate_time: dt.datetime
    taint_time: dt.datetime | None

    def __repr__(self) -> str:
        return f"KeyRow({self.kid!r}, {self.alg!r})"


class SigningKeys:
    def __init__(self, tx: PlatformTx, session: AsyncSession) -> None:
        self._tx = tx
        self._s = session

    async def lock(self) -> None:
        """Hold the deployment-wide signing-key lock until the transaction ends.

        PostgreSQL: an advisory lock (it also covers the empty table, which a row
        lock cannot). SQLite: a write statement first takes the database's single
        write lock (waiting on busy_timeout), so reads after it see the latest rows.
        """
        if self._tx.is_postgres:
            await self._s.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _LOCK_ID})
        else:
            await self._s.execute(text("UPDATE signing_keys SET kid = kid WHERE 0"))

    async def rows(self) -> list[KeyRow]:
        found = await self._s.execute(
            select(
                SigningKey.kid,
                SigningKey.alg,
                SigningKey.public_jwk,
                SigningKey.sealed_private_key,
                SigningKey.create_time,
                SigningKey.publish_time,
                SigningKey.activate_time,
                SigningKey.taint_time,
            )
        )
        return [KeyRow(*row) for row in found.all()]

    async def times(self) -> list[KeyTimes]:
        found = await self._s.execute(
            select(
                SigningKey.kid,
                SigningKey.publish_time,
                SigningKey.activate_time,
                SigningKey.taint_time,
            )
        )
        return [KeyTimes(*row) for row in found.all()]

    async def insert(self, row: KeyRow) -> None:
        values: dict[str, Any] = {
            "kid": row.kid,
            "alg": row.alg,
            "public_jwk": row.public_jwk,
            "sealed_private_key": row.sealed_private_key,
            "create_time": row.create_time,
            "publish_time": row.publish_time,
            "activate_time": row.activate_time,
            "taint_time": row.taint_time,
        }
        await self._s.execute(insert(SigningKey).values(**values))

    async def taint(self, kid: str, now: dt.datetime) -> None:
        await self._s.execute(
            update(SigningKey).where(SigningKey.kid == kid).values(taint_time=now)
        )

    async def delete(self, kids: list[str]) -> None:
        await self._s.execute(delete(SigningKey).where(SigningKey.kid.in_(kids)))
