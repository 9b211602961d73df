"""User-delegated tokens: delegation rules (per-org ``may_act``) and the trusted-backend grant.

A delegated token's ``sub`` is the user (the principal) and its ``act`` the agent
acting now (RFC 8693 §4.1). The developer's backend, authenticated with its own
service-account token, may delegate an active user of *its* org to one of its
org's agents; scopes and audiences come from that agent's trust policies.
"""

from __future__ import annotations

from control_plane.domain import names
from control_plane.domain.entities import Page
from control_plane.domain.errors import (
    AlreadyExists,
    InvalidTarget,
    NotFound,
    PermissionDenied,
    field_error,
)
from control_plane.domain.principals import Principal, Role
from control_plane.services.context import ServiceContext
from control_plane.services.grants.issuance import issue_delegated
from control_plane.services.identity import IdentityDirectory
from control_plane.services.tenant_crud import TenantCrud
from control_plane.storage import models as m
from control_plane.storage.repositories import TenantRepository
from control_plane.tokens.minting import MintedToken, Minter


def rule_view(r: m.DelegationRule) -> dict[str, object]:
    return {
        "name": names.child_name(r.org_id, "delegationRules", r.id),
        "delegator": names.child_name(r.org_id, "agents", r.delegator_agent_id),
        "delegate": names.child_name(r.org_id, "agents", r.delegate_agent_id),
        "create_time": r.create_time,
    }


class DelegationRuleService(TenantCrud[m.DelegationRule, dict[str, object]]):
    model = m.DelegationRule
    collection = "delegationRules"

    def __init__(self, ctx: ServiceContext) -> None:
        super().__init__(ctx, rule_view)

    async def create(
        self, principal: Principal, org_id: str, delegator: str, delegate: str, request_id: str
    ) -> dict[str, object]:
        principal.scope_for(org_id)  # permission before anything about the request's ids
        frm = names.parse_child(delegator, "agents", "delegation_rule.delegator")
        to = names.parse_child(delegate, "agents", "delegation_rule.delegate")
        if frm.org_id != org_id or to.org_id != org_id:
            raise field_error("delegation_rule", "both agents must be in the rule's organization")
        if frm.id == to.id:
            raise field_error("delegation_rule.delegate", "an agent does not delegate to itself")
        fields = {"delegator_agent_id": frm.id, "delegate_agent_id": to.id}

        async def agents_exist(repo: TenantRepository) -> None:
            for agent_id in (frm.id, to.id):
                if await repo.get(m.Agent, agent_id) is None:
                    raise field_error("delegation_rule", "names an agent that does not exist")
            if await repo.find(m.DelegationRule, **fields) is not None:
                raise AlreadyExists("that delegation rule exists")

        row, _ = await self._create(principal, org_id, request_id, fields, precheck=agents_exist)
        return rule_view(row)

    async def list(
        self, principal: Principal, org_id: str, page_size: int, page_token: str
    ) -> Page[dict[str, object]]:
        return await self._list(principal, org_id, page_size, page_token)

    async def delete(self, principal: Principal, name: str) -> None:
        n = names.parse_child(name, "delegationRules")
        await self._delete(principal, n.org_id, n.id)

    async def allows(self, org_id: str, delegator_id: str, delegate_id: str) -> bool:
        async with self.ctx.db.org_tx(org_id) as s:
            row = await TenantRepository(s, org_id).find(
                m.DelegationRule, delegator_agent_id=delegator_id, delegate_agent_id=delegate_id
            )
        return row is not None


class TrustedBackendDelegation:
    def __init__(self, ctx: ServiceContext, directory: IdentityDirectory, minter: Minter) -> None:
        self.ctx = ctx
        self.directory = directory
        self.minter = minter

    async def delegate(
        self, caller: Principal, user: str, agent: str, scope: str, audience: tuple[str, ...]
    ) -> MintedToken:
        if caller.role is not Role.SERVICE_ACCOUNT or caller.org_id is None:
            raise PermissionDenied()
        u = names.parse_child(user, "users", "user")
        a = names.parse_child(agent, "agents", "agent")
        org_id = caller.org_id
        if u.org_id != org_id or a.org_id != org_id:
            raise NotFound()  # another org's ids look like missing ones
        async with self.ctx.db.org_tx(org_id) as s:
            row = await TenantRepository(s, org_id).get(m.User, u.id)
        if row is None:
            raise NotFound()
        if row.state != "ACTIVE":
            raise InvalidTarget("the user is not active")
        ident = await self.directory.get(org_id)
        if ident is None or a.id not in ident.active_agents:
            raise NotFound()
        return await issue_delegated(self.minter, ident, u.id, a.id, scope, audience)
