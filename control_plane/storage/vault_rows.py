"""The vault's rows: connector settings, OAuth apps, developer secrets, connected
accounts and connect links. Sealed columns hold barrier blobs; this module never
sees a plaintext secret."""

from __future__ import annotations

import datetime as dt
from typing import Any, Generic, TypeVar

from sqlalchemy import func, select, update

from control_plane.storage import models as m
from control_plane.storage.repositories import PlatformRepo, TenantRepo

A = m.ConnectedAccount
C = TypeVar("C", m.OrgConnector, m.OrgOAuthApp, m.OrgDeveloperSecret)


class ConnectedAccounts(TenantRepo[m.ConnectedAccount]):
    model = m.ConnectedAccount

    def _of(self, owner_kind: str, owner_id: str, connector_id: str | None = None) -> list[Any]:
        conds = [A.org_id == self.org_id, A.owner_kind == owner_kind, A.owner_id == owner_id]
        if connector_id is not None:
            conds.append(A.connector_id == connector_id)
        return conds

    async def owned_by(self, owner_kind: str, owner_id: str) -> list[m.ConnectedAccount]:
        found = await self._s.execute(select(A).where(*self._of(owner_kind, owner_id)))
        return list(found.scalars())

    async def clear_default(self, owner_kind: str, owner_id: str, connector_id: str) -> None:
        await self._s.execute(
            update(A).where(*self._of(owner_kind, owner_id, connector_id)).values(is_default=False)
        )

    async def newest(
        self, owner_kind: str, owner_id: str, connector_id: str
    ) -> m.ConnectedAccount | None:
        found = await self._s.execute(
            select(A)
            .where(*self._of(owner_kind, owner_id, connector_id))
            .order_by(A.create_time.desc())
            .limit(1)
        )
        return found.scalar_one_or_none()

    async def take_lease(
        self, account_id: str, version: int, now: dt.datetime, until: dt.datetime
    ) -> bool:
        """Take the refresh lease if nobody holds a live one and the secret is still
        at ``version`` (one conditional UPDATE: the cross-replica single flight)."""
        result = await self._s.execute(
            update(A)
            .where(
                A.org_id == self.org_id,
                A.id == account_id,
                A.secret_version == version,
                (A.refresh_lease_until.is_(None)) | (A.refresh_lease_until < now),
            )
            .values(refresh_lease_until=until)
            .returning(A.id)
        )
        return result.scalar_one_or_none() is not None

    async def record_sent(self, account_id: str, version: int) -> bool:
        """Intent before the external effect: the refresh token of ``version`` is about
        to be sent. False when the secret moved on meanwhile (nothing is sent then)."""
        result = await self._s.execute(
            update(A)
            .where(A.org_id == self.org_id, A.id == account_id, A.secret_version == version)
            .values(refresh_sent_version=version)
            .returning(A.id)
        )
        return result.scalar_one_or_none() is not None

    async def release_lease(self, account_id: str) -> None:
        await self._s.execute(
            update(A)
            .where(A.org_id == self.org_id, A.id == account_id)
            .values(refresh_lease_until=None)
        )

    async def idle_since(self, connector_id: str, before: dt.datetime) -> list[str]:
        """ACTIVE accounts of ``connector_id`` not refreshed (or connected) since ``before``."""
        last = func.coalesce(A.last_refreshed_time, A.secret_create_time)
        found = await self._s.execute(
            select(A.id).where(
                A.org_id == self.org_id,
                A.connector_id == connector_id,
                A.state == "ACTIVE",
                last < before,
            )
        )
        return list(found.scalars())

    async def mark_used(self, account_id: str, now: dt.datetime) -> None:
        await self._s.execute(
            update(A).where(A.org_id == self.org_id, A.id == account_id).values(last_used_time=now)
        )


class ConnectLinks(TenantRepo[m.ConnectLink]):
    model = m.ConnectLink

    async def pending_state(self, state_hash: str, now: dt.datetime) -> str | None:
        """The link id of an unspent, unexpired authorization ``state`` (read-only)."""
        L = m.ConnectLink
        found = await self._s.execute(
            select(L.id).where(
                L.org_id == self.org_id,
                L.state_hash == state_hash,
                L.used_time.is_(None),
                L.expire_time > now,
            )
        )
        return found.scalar_one_or_none()

    async def claim_state(self, state_hash: str, now: dt.datetime) -> str | None:
        """Spend an authorization ``state`` once: the link id, or None when it is unknown,
        already used or expired (an atomic UPDATE: whoever flips ``used_time`` owns it)."""
        L = m.ConnectLink
        claimed = await self._s.execute(
            update(L)
            .where(
                L.org_id == self.org_id,
                L.state_hash == state_hash,
                L.used_time.is_(None),
                L.expire_time > now,
            )
            .values(used_time=now)
            .returning(L.id)
        )
        return claimed.scalar_one_or_none()


class _ByConnector(TenantRepo[C], Generic[C]):
    """Org rows keyed by (org_id, connector_id)."""

    async def by_connector(self, connector_id: str) -> C | None:
        return await self._s.get(self.model, (self.org_id, connector_id))

    async def connector_ids(self) -> set[str]:
        found = await self._s.execute(
            select(self._m.connector_id).where(self._m.org_id == self.org_id)
        )
        return set(found.scalars())


class OrgConnectors(_ByConnector[m.OrgConnector]):
    model = m.OrgConnector


class OrgOAuthApps(_ByConnector[m.OrgOAuthApp]):
    model = m.OrgOAuthApp


class OrgDeveloperSecrets(_ByConnector[m.OrgDeveloperSecret]):
    model = m.OrgDeveloperSecret


class PlatformOAuthApps(PlatformRepo[m.PlatformOAuthApp]):
    model = m.PlatformOAuthApp

    async def connector_ids(self) -> set[str]:
        found = await self._s.execute(select(m.PlatformOAuthApp.connector_id))
        return set(found.scalars())


class PlatformDeveloperSecrets(PlatformRepo[m.PlatformDeveloperSecret]):
    model = m.PlatformDeveloperSecret
