"""Units of work: what ``Database.org_tx`` and ``Database.platform_tx`` hand out.

A unit of work owns its SQLAlchemy session and never hands it out: callers get
repositories (one attribute per table), a few named operations (advisory
locks, NOTIFY at commit, commit/rollback hooks) and nothing else, so code
outside :mod:`control_plane.storage` has no way to issue a statement of its own.
An :class:`OrgTx` serves exactly one org's tenant tables (plus read access to
the org's own ``organizations`` row); a :class:`PlatformTx` serves platform
tables only.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.domain.scope import OrgScope

if TYPE_CHECKING:
    from control_plane.storage.account_events import AccountEvents
    from control_plane.storage.db import Database
    from control_plane.storage.deks import OrgDeks, SystemDeks
    from control_plane.storage.directory import (
        Agents,
        DelegationRules,
        IdentityProviders,
        OrgApiKeys,
        ServiceAccounts,
        ToolPolicyRules,
        TrustPolicies,
        UsedAssertions,
        Users,
    )
    from control_plane.storage.issued_tokens import IssuedTokens
    from control_plane.storage.organizations import Organizations, OrgRow
    from control_plane.storage.platform import PlatformApiKeys
    from control_plane.storage.rate_buckets import AnonymousRateBuckets, RateBuckets
    from control_plane.storage.signing_keys import SigningKeys
    from control_plane.storage.tool_actions import ToolActions
    from control_plane.storage.tool_confirmations import ToolConfirmations
    from control_plane.storage.vault_rows import (
        ConnectedAccounts,
        ConnectLinks,
        OrgConnectors,
        OrgDeveloperSecrets,
        OrgOAuthApps,
        PlatformDeveloperSecrets,
        PlatformOAuthApps,
    )


class _Unit:
    def __init__(self, db: Database, session: AsyncSession) -> None:
        self.db = db
        self._session = session

    @property
    def is_postgres(self) -> bool:
        return self.db.is_postgres

    async def flush(self) -> None:
        await self._session.flush()

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once this transaction has committed."""
        event.listen(self._session.sync_session, "after_commit", lambda _s: callback(), once=True)

    def on_rollback(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` if this transaction rolls back."""
        event.listen(self._session.sync_session, "after_rollback", lambda _s: callback(), once=True)

    async def _advisory_lock(self, key: str) -> None:
        # SQLite has one writer, so its write transactions are serialized already.
        if self.db.is_postgres:
            await self._session.execute(
                text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": key}
            )

    async def _notify(self, channel: str, payload: str) -> None:
        if self.db.is_postgres:
            await self._session.execute(
                text("SELECT pg_notify(:channel, :payload)"),
                {"channel": channel, "payload": payload},
            )


class OrgTx(_Unit):
    """One org's transaction. Repositories are created on first use."""

    def __init__(self, db: Database, session: AsyncSession, scope: OrgScope) -> None:
        super().__init__(db, session)
        self.scope = scope
        self.org_id = scope.org_id

    async def lock(self, name: str) -> None:
        """PostgreSQL: hold the advisory lock ``name`` of this org until the transaction ends."""
        await self._advisory_lock(f"agentauth.{name}:{self.org_id}")

    async def notify(self, channel: str) -> None:
        """PostgreSQL: NOTIFY ``channel`` with this org's id when the transaction commits."""
        await self._notify(channel, self.org_id)

    # ------------------------------------------------------------ the org itself

    @cached_property
    def _org(self) -> OrgRow:
        from control_plane.storage.organizations import OrgRow

        return OrgRow(self._session, self.org_id)

    async def org(self) -> Any | None:
        """This org's ``organizations`` row, or None when it does not exist."""
        return await self._org.get()

    async def org_exists(self) -> bool:
        return await self._org.exists()

    async def create_org(self, row: Any) -> None:
        """Insert this org's own row (a new org: its first write)."""
        await self._org.create(row)

    async def delete_org(self) -> None:
        """Delete every row of this org and the org itself, in this transaction."""
        await self._org.delete_everything()

    # ------------------------------------------------------------ tenant tables

    @cached_property
    def users(self) -> Users:
        from control_plane.storage.directory import Users

        return Users(self._session, self.org_id)

    @cached_property
    def agents(self) -> Agents:
        from control_plane.storage.directory import Agents

        return Agents(self._session, self.org_id)

    @cached_property
    def service_accounts(self) -> ServiceAccounts:
        from control_plane.storage.directory import ServiceAccounts

        return ServiceAccounts(self._session, self.org_id)

    @cached_property
    def api_keys(self) -> OrgApiKeys:
        from control_plane.storage.directory import OrgApiKeys

        return OrgApiKeys(self._session, self.org_id)

    @cached_property
    def trust_policies(self) -> TrustPolicies:
        from control_plane.storage.directory import TrustPolicies

        return TrustPolicies(self._session, self.org_id)

    @cached_property
    def delegation_rules(self) -> DelegationRules:
        from control_plane.storage.directory import DelegationRules

        return DelegationRules(self._session, self.org_id)

    @cached_property
    def tool_policy_rules(self) -> ToolPolicyRules:
        from control_plane.storage.directory import ToolPolicyRules

        return ToolPolicyRules(self._session, self.org_id)

    @cached_property
    def identity_providers(self) -> IdentityProviders:
        from control_plane.storage.directory import IdentityProviders

        return IdentityProviders(self._session, self.org_id)

    @cached_property
    def used_assertions(self) -> UsedAssertions:
        from control_plane.storage.directory import UsedAssertions

        return UsedAssertions(self._session, self.org_id)

    @cached_property
    def issued_tokens(self) -> IssuedTokens:
        from control_plane.storage.issued_tokens import IssuedTokens

        return IssuedTokens(self, self._session)

    @cached_property
    def account_events(self) -> AccountEvents:
        from control_plane.storage.account_events import AccountEvents

        return AccountEvents(self, self._session)

    @cached_property
    def accounts(self) -> ConnectedAccounts:
        from control_plane.storage.vault_rows import ConnectedAccounts

        return ConnectedAccounts(self._session, self.org_id)

    @cached_property
    def connect_links(self) -> ConnectLinks:
        from control_plane.storage.vault_rows import ConnectLinks

        return ConnectLinks(self._session, self.org_id)

    @cached_property
    def connectors(self) -> OrgConnectors:
        from control_plane.storage.vault_rows import OrgConnectors

        return OrgConnectors(self._session, self.org_id)

    @cached_property
    def oauth_apps(self) -> OrgOAuthApps:
        from control_plane.storage.vault_rows import OrgOAuthApps

        return OrgOAuthApps(self._session, self.org_id)

    @cached_property
    def developer_secrets(self) -> OrgDeveloperSecrets:
        from control_plane.storage.vault_rows import OrgDeveloperSecrets

        return OrgDeveloperSecrets(self._session, self.org_id)

    @cached_property
    def deks(self) -> OrgDeks:
        from control_plane.storage.deks import OrgDeks

        return OrgDeks(self, self._session)

    @cached_property
    def rate_buckets(self) -> RateBuckets:
        from control_plane.storage.rate_buckets import RateBuckets

        return RateBuckets(self._session, self.org_id, self.db.dialect)

    @cached_property
    def tool_actions(self) -> ToolActions:
        from control_plane.storage.tool_actions import ToolActions

        return ToolActions(self._session, self.org_id)

    @cached_property
    def tool_confirmations(self) -> ToolConfirmations:
        from control_plane.storage.tool_confirmations import ToolConfirmations

        return ToolConfirmations(self._session, self.org_id)

    # Platform rows an org transaction may read (the deployment's shared OAuth app
    # for a connector is looked up in the same transaction as the org's own).

    @cached_property
    def platform_oauth_apps(self) -> PlatformOAuthApps:
        from control_plane.storage.vault_rows import PlatformOAuthApps

        return PlatformOAuthApps(self._session)


class PlatformTx(_Unit):
    """Platform tables only: organizations, platform keys, signing keys, system DEKs."""

    async def lock(self, name: str) -> None:
        """PostgreSQL: hold the deployment-wide advisory lock ``name`` until the end."""
        await self._advisory_lock(f"agentauth.platform.{name}")

    @cached_property
    def orgs(self) -> Organizations:
        from control_plane.storage.organizations import Organizations

        return Organizations(self._session)

    @cached_property
    def api_keys(self) -> PlatformApiKeys:
        from control_plane.storage.platform import PlatformApiKeys

        return PlatformApiKeys(self._session)

    @cached_property
    def signing_keys(self) -> SigningKeys:
        from control_plane.storage.signing_keys import SigningKeys

        return SigningKeys(self, self._session)

    @cached_property
    def deks(self) -> SystemDeks:
        from control_plane.storage.deks import SystemDeks

        return SystemDeks(self._session)

    @cached_property
    def oauth_apps(self) -> PlatformOAuthApps:
        from control_plane.storage.vault_rows import PlatformOAuthApps

        return PlatformOAuthApps(self._session)

    @cached_property
    def developer_secrets(self) -> PlatformDeveloperSecrets:
        from control_plane.storage.vault_rows import PlatformDeveloperSecrets

        return PlatformDeveloperSecrets(self._session)

    @cached_property
    def anonymous_rate_buckets(self) -> AnonymousRateBuckets:
        from control_plane.storage.rate_buckets import AnonymousRateBuckets

        return AnonymousRateBuckets(self._session, self.db.dialect)
