"""The org's directory: users, agents, service accounts, admin keys, trust policies,
delegation rules, tool policy rules, the identity provider, and used client assertions."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select

from control_plane.storage import models as m
from control_plane.storage.repositories import TenantRepo


class Users(TenantRepo[m.User]):
    model = m.User

    async def id_and_state_by_external_id(self, external_id: str) -> tuple[str, str] | None:
        found = (
            await self._s.execute(
                select(m.User.id, m.User.state).where(
                    m.User.org_id == self.org_id, m.User.external_id == external_id
                )
            )
        ).first()
        return None if found is None else (str(found.id), str(found.state))


class Agents(TenantRepo[m.Agent]):
    model = m.Agent

    async def active_ids(self) -> list[str]:
        found = await self._s.execute(
            select(m.Agent.id).where(m.Agent.org_id == self.org_id, m.Agent.state == "ACTIVE")
        )
        return list(found.scalars())


class ServiceAccounts(TenantRepo[m.ServiceAccount]):
    model = m.ServiceAccount

    async def active_ids(self) -> list[str]:
        found = await self._s.execute(
            select(m.ServiceAccount.id).where(
                m.ServiceAccount.org_id == self.org_id, m.ServiceAccount.state == "ACTIVE"
            )
        )
        return list(found.scalars())


class OrgApiKeys(TenantRepo[m.OrgApiKey]):
    model = m.OrgApiKey


class TrustPolicies(TenantRepo[m.TrustPolicy]):
    model = m.TrustPolicy

    async def in_order(self) -> list[m.TrustPolicy]:
        found = await self._s.execute(
            select(m.TrustPolicy)
            .where(m.TrustPolicy.org_id == self.org_id)
            .order_by(m.TrustPolicy.create_time, m.TrustPolicy.id)
        )
        return list(found.scalars())


class DelegationRules(TenantRepo[m.DelegationRule]):
    model = m.DelegationRule


class ToolPolicyRules(TenantRepo[m.ToolPolicyRule]):
    model = m.ToolPolicyRule

    async def in_order(self) -> list[m.ToolPolicyRule]:
        """Every rule of the org, oldest first (the order ListToolPolicyRules pages in)."""
        found = await self._s.execute(
            select(m.ToolPolicyRule)
            .where(m.ToolPolicyRule.org_id == self.org_id)
            .order_by(m.ToolPolicyRule.create_time, m.ToolPolicyRule.id)
        )
        return list(found.scalars())


class IdentityProviders(TenantRepo[m.IdentityProvider]):
    model = m.IdentityProvider


class UsedAssertions(TenantRepo[m.UsedAssertion]):
    model = m.UsedAssertion

    async def consume(self, digest: str, expire_time: dt.datetime, now: dt.datetime) -> None:
        """Remember ``digest`` until ``expire_time`` (pruning expired ones first).

        A second use of the same digest fails the transaction with AlreadyExists.
        """
        await self._s.execute(
            delete(m.UsedAssertion).where(
                m.UsedAssertion.org_id == self.org_id, m.UsedAssertion.expire_time < now
            )
        )
        await self._s.execute(
            insert(m.UsedAssertion).values(
                org_id=self.org_id, digest=digest, expire_time=expire_time
            )
        )


@dataclass(frozen=True, slots=True)
class IdentityRows:
    """What the per-org identity snapshot is built from, read in one transaction."""

    org: m.Organization
    policies: list[m.TrustPolicy]
    active_agents: list[str]
    active_service_accounts: list[str]
    identity_provider: m.IdentityProvider | None


async def identity_rows(tx: Any) -> IdentityRows | None:
    """The org's trust policies, active agents and service accounts, settings and IdP."""
    org = await tx.org()
    if org is None:
        return None
    return IdentityRows(
        org,
        await tx.trust_policies.in_order(),
        await tx.agents.active_ids(),
        await tx.service_accounts.active_ids(),
        await tx.identity_providers.find(),
    )
