"""Client credentials the deployment or an org configures: OAuth apps and developer secrets.

Both exist at two levels: the deployment's (``PLATFORM``, platform admins) and an
org's own (which wins for that org). Secrets are sealed with AAD (scope, table,
connector, field) and are write-only: reads return metadata (a client id, a
masked hint), never the secret. The opened secret exists only inside the vault
(:meth:`OAuthApps.client_for` is for the vault's own token-endpoint and API calls)
and is wrapped in :class:`Secret`, whose ``repr`` never shows it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from control_plane.domain.scope import OrgScope
from control_plane.storage import models as m
from control_plane.storage.db import Database
from control_plane.storage.units import OrgTx
from control_plane.vault.barrier import PLATFORM, Barrier, Scope


class Secret:
    """A decrypted secret inside the vault. ``reveal()`` is the only way to its text."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret(••••)"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("secrets cannot be pickled or copied")


@dataclass(frozen=True, slots=True)
class OAuthClient:
    """An OAuth client for one connector: id, secret, and where it was configured."""

    client_id: str
    client_secret: Secret
    source: str  # ORGANIZATION | DEPLOYMENT


@dataclass(frozen=True, slots=True)
class OAuthAppRecord:
    client_id: str
    update_time: dt.datetime


@dataclass(frozen=True, slots=True)
class DeveloperSecretRecord:
    secret_hint: str
    rate_requests: int
    rate_period_seconds: int
    create_time: dt.datetime
    rotate_time: dt.datetime


def _is_org(scope: Scope) -> bool:
    return isinstance(scope, OrgScope)


class OAuthApps:
    def __init__(self, db: Database, barrier: Barrier) -> None:
        self._db = db
        self._barrier = barrier

    def _tx(self, scope: Scope) -> Any:
        return self._db.org_tx(scope) if isinstance(scope, OrgScope) else self._db.platform_tx()

    @staticmethod
    def _table(scope: Scope) -> str:
        return "org_oauth_apps" if _is_org(scope) else "platform_oauth_apps"

    async def put(
        self, scope: Scope, connector_id: str, client_id: str, client_secret: str, now: dt.datetime
    ) -> OAuthAppRecord | None:
        """Set the app; None when ``scope`` is an org that does not exist."""
        async with self._tx(scope) as tx:
            if isinstance(tx, OrgTx) and not await tx.org_exists():
                return None
            sealed = await self._barrier.seal(
                scope,
                self._table(scope),
                connector_id,
                "client_secret",
                client_secret.encode(),
                tx=tx,
            )
            row = await self._row(tx, connector_id)
            if row is None:
                if isinstance(tx, OrgTx):
                    row = m.OrgOAuthApp(org_id=tx.org_id, connector_id=connector_id)
                else:
                    row = m.PlatformOAuthApp(connector_id=connector_id)
                row.client_id, row.client_secret, row.update_time = client_id, sealed, now
                await tx.oauth_apps.add(row)
            else:
                row.client_id, row.client_secret, row.update_time = client_id, sealed, now
        return OAuthAppRecord(client_id, now)

    async def _row(self, tx: Any, connector_id: str) -> Any:
        if isinstance(tx, OrgTx):
            return await tx.oauth_apps.by_connector(connector_id)
        return await tx.oauth_apps.get(connector_id)

    async def get(self, scope: Scope, connector_id: str) -> OAuthAppRecord | None:
        async with self._tx(scope) as tx:
            row = await self._row(tx, connector_id)
        return None if row is None else OAuthAppRecord(row.client_id, row.update_time)

    async def delete(self, scope: Scope, connector_id: str) -> bool:
        async with self._tx(scope) as tx:
            row = await self._row(tx, connector_id)
            if row is None:
                return False
            await tx.oauth_apps.delete_row(row)
        return True

    async def sources(self, tx: OrgTx) -> tuple[set[str], set[str]]:
        """(connectors with an org app, connectors with a deployment app), for views."""
        return await tx.oauth_apps.connector_ids(), await tx.platform_oauth_apps.connector_ids()

    async def configured(self, tx: OrgTx, connector_id: str) -> bool:
        """Whether the org can start an authorization for ``connector_id`` (no secret read)."""
        if await tx.oauth_apps.by_connector(connector_id) is not None:
            return True
        return await tx.platform_oauth_apps.get(connector_id) is not None

    async def client_id(self, tx: OrgTx, connector_id: str) -> str | None:
        """The client id an authorization request names (no secret is read)."""
        own = await tx.oauth_apps.by_connector(connector_id)
        if own is not None:
            return str(own.client_id)
        shared = await tx.platform_oauth_apps.get(connector_id)
        return None if shared is None else str(shared.client_id)

    async def client_for(self, scope: OrgScope, connector_id: str) -> OAuthClient | None:
        """The org's own app, else the deployment's. Vault-internal: it opens the secret."""
        async with self._db.org_tx(scope) as tx:
            own = await tx.oauth_apps.by_connector(connector_id)
            if own is not None:
                secret = await self._barrier.open(
                    scope,
                    "org_oauth_apps",
                    connector_id,
                    "client_secret",
                    own.client_secret,
                    tx=tx,
                )
                return OAuthClient(own.client_id, Secret(secret.decode()), "ORGANIZATION")
        async with self._db.platform_tx() as ptx:
            shared = await ptx.oauth_apps.get(connector_id)
            if shared is None:
                return None
            secret = await self._barrier.open(
                PLATFORM,
                "platform_oauth_apps",
                connector_id,
                "client_secret",
                shared.client_secret,
                tx=ptx,
            )
        return OAuthClient(shared.client_id, Secret(secret.decode()), "DEPLOYMENT")


class DeveloperSecrets:
    def __init__(self, db: Database, barrier: Barrier) -> None:
        self._db = db
        self._barrier = barrier

    def _tx(self, scope: Scope) -> Any:
        return self._db.org_tx(scope) if isinstance(scope, OrgScope) else self._db.platform_tx()

    async def _row(self, tx: Any, connector_id: str) -> Any:
        if isinstance(tx, OrgTx):
            return await tx.developer_secrets.by_connector(connector_id)
        return await tx.developer_secrets.get(connector_id)

    async def put(
        self,
        scope: Scope,
        connector_id: str,
        secret: str,
        hint: str,
        rate_requests: int,
        rate_period_seconds: int,
        now: dt.datetime,
    ) -> DeveloperSecretRecord | None:
        """Set the secret; None when ``scope`` is an org that does not exist."""
        table = "org_developer_secrets" if _is_org(scope) else "platform_developer_secrets"
        async with self._tx(scope) as tx:
            if isinstance(tx, OrgTx) and not await tx.org_exists():
                return None
            sealed = await self._barrier.seal(
                scope, table, connector_id, "secret", secret.encode(), tx=tx
            )
            row = await self._row(tx, connector_id)
            new = row is None
            if new:
                if isinstance(tx, OrgTx):
                    row = m.OrgDeveloperSecret(
                        org_id=tx.org_id, connector_id=connector_id, create_time=now
                    )
                else:
                    row = m.PlatformDeveloperSecret(connector_id=connector_id, create_time=now)
            row.secret = sealed
            row.secret_hint = hint
            row.rate_requests = rate_requests
            row.rate_period_seconds = rate_period_seconds if rate_requests else 0
            row.rotate_time = now
            if new:
                await tx.developer_secrets.add(row)
            return _secret_record(row)

    async def get(self, scope: Scope, connector_id: str) -> DeveloperSecretRecord | None:
        async with self._tx(scope) as tx:
            row = await self._row(tx, connector_id)
            return None if row is None else _secret_record(row)

    async def delete(self, scope: Scope, connector_id: str) -> bool:
        async with self._tx(scope) as tx:
            row = await self._row(tx, connector_id)
            if row is None:
                return False
            await tx.developer_secrets.delete_row(row)
        return True

    async def reveal(
        self, scope: OrgScope, connector_id: str
    ) -> tuple[Secret, DeveloperSecretRecord] | None:
        """The secret an org's calls use (its own, else the deployment's), vault-internal."""
        async with self._db.org_tx(scope) as tx:
            row = await tx.developer_secrets.by_connector(connector_id)
            if row is not None:
                plain = await self._barrier.open(
                    scope, "org_developer_secrets", connector_id, "secret", row.secret, tx=tx
                )
                return Secret(plain.decode()), _secret_record(row)
        async with self._db.platform_tx() as ptx:
            shared = await ptx.developer_secrets.get(connector_id)
            if shared is None:
                return None
            plain = await self._barrier.open(
                PLATFORM,
                "platform_developer_secrets",
                connector_id,
                "secret",
                shared.secret,
                tx=ptx,
            )
            return Secret(plain.decode()), _secret_record(shared)


def _secret_record(row: Any) -> DeveloperSecretRecord:
    return DeveloperSecretRecord(
        row.secret_hint,
        row.rate_requests,
        row.rate_period_seconds,
        row.create_time,
        row.rotate_time,
    )
