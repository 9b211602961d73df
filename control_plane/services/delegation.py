"""Delegation rules: per-org RFC 8693 §4.4 ``may_act`` — which agent may delegate to which.

The grants that mint delegated tokens live in :mod:`control_plane.services.grants`.
"""

from __future__ import annotations

from control_plane.domain import names
from control_plane.domain.entities import Page
from control_plane.domain.errors import (
    AlreadyExists,
    field_error,
)
from control_plane.domain.principals import Principal
from control_plane.domain.scope import OrgScope
from control_plane.services.context import ServiceContext
from control_plane.services.tenant_crud import TenantCrud
from control_plane.storage import models as m
from control_plane.storage.units import OrgTx


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
    repository = "delegation_rules"

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

        async def agents_exist(tx: OrgTx) -> None:
            for agent_id in (frm.id, to.id):
                if await tx.agents.get(agent_id) is None:
                    raise field_error("delegation_rule", "names an agent that does not exist")
            if await tx.delegation_rules.find(**fields) is not None:
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

    async def allows(self, scope: OrgScope, delegator_id: str, delegate_id: str) -> bool:
        async with self.ctx.db.org_tx(scope) as tx:
            row = await tx.delegation_rules.find(
                delegator_agent_id=delegator_id, delegate_agent_id=delegate_id
            )
        return row is not None
