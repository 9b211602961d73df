"""Agents: registered workload identities of the developer's agents (actors, never principals)."""

from __future__ import annotations

import datetime as dt

from control_plane.domain import validation as v
from control_plane.domain.entities import AgentView, Page
from control_plane.domain.principals import Principal
from control_plane.services.context import ServiceContext
from control_plane.services.tenant_crud import TenantCrud
from control_plane.storage import models as m


def agent_view(r: m.Agent) -> AgentView:
    return AgentView(
        r.org_id, r.id, r.display_name, r.description, r.state, r.create_time, r.update_time
    )


def disable(row: m.Agent | m.ServiceAccount, now: dt.datetime) -> None:
    if row.state != "DISABLED":
        row.state = "DISABLED"
        row.update_time = now


class AgentService(TenantCrud[m.Agent, AgentView]):
    model = m.Agent
    collection = "agents"
    repository = "agents"

    def __init__(self, ctx: ServiceContext) -> None:
        super().__init__(ctx, agent_view)

    async def register(
        self,
        principal: Principal,
        org_id: str,
        display_name: str,
        description: str,
        request_id: str,
    ) -> AgentView:
        fields = {
            "display_name": v.display_name(display_name, "agent.display_name"),
            "description": v.text(
                description, "agent.description", max_len=v.MAX_DESCRIPTION, allow_newlines=True
            ),
            "state": "ACTIVE",
        }
        row, _ = await self._create(principal, org_id, request_id, fields)
        return agent_view(row)

    async def get(self, principal: Principal, org_id: str, agent_id: str) -> AgentView:
        return await self._get(principal, org_id, agent_id)

    async def list(
        self, principal: Principal, org_id: str, page_size: int, page_token: str
    ) -> Page[AgentView]:
        return await self._list(principal, org_id, page_size, page_token)

    async def disable(self, principal: Principal, org_id: str, agent_id: str) -> AgentView:
        return await self._update(principal, org_id, agent_id, disable)
