"""Service accounts: one per org and purpose, never shared across orgs."""

from __future__ import annotations

from control_plane.domain import validation as v
from control_plane.domain.entities import Page, ServiceAccountView
from control_plane.domain.errors import AlreadyExists
from control_plane.domain.principals import Principal
from control_plane.services.agents import disable
from control_plane.services.context import ServiceContext
from control_plane.services.tenant_crud import TenantCrud
from control_plane.storage import models as m
from control_plane.storage.units import OrgTx


def sa_view(r: m.ServiceAccount) -> ServiceAccountView:
    return ServiceAccountView(
        r.org_id, r.id, r.display_name, r.purpose, r.state, r.create_time, r.update_time
    )


class ServiceAccountService(TenantCrud[m.ServiceAccount, ServiceAccountView]):
    model = m.ServiceAccount
    collection = "serviceAccounts"
    repository = "service_accounts"

    def __init__(self, ctx: ServiceContext) -> None:
        super().__init__(ctx, sa_view)

    async def create(
        self, principal: Principal, org_id: str, display_name: str, purpose: str, request_id: str
    ) -> ServiceAccountView:
        fields = {
            "display_name": v.display_name(display_name, "service_account.display_name"),
            "purpose": v.purpose(purpose),
            "state": "ACTIVE",
        }

        async def unique_purpose(tx: OrgTx) -> None:
            if await tx.service_accounts.find(purpose=fields["purpose"]) is not None:
                raise AlreadyExists(
                    "this org already has a service account for that purpose",
                    metadata={"field": "service_account.purpose"},
                )

        row, _ = await self._create(principal, org_id, request_id, fields, precheck=unique_purpose)
        return sa_view(row)

    async def get(self, principal: Principal, org_id: str, sa_id: str) -> ServiceAccountView:
        return await self._get(principal, org_id, sa_id)

    async def list(
        self, principal: Principal, org_id: str, page_size: int, page_token: str
    ) -> Page[ServiceAccountView]:
        return await self._list(principal, org_id, page_size, page_token)

    async def disable(self, principal: Principal, org_id: str, sa_id: str) -> ServiceAccountView:
        return await self._update(principal, org_id, sa_id, disable)
