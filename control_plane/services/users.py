"""Users: principals of an org, unique per org by the developer's external id."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from control_plane.domain import validation as v
from control_plane.domain.entities import Page, UserView
from control_plane.domain.errors import AlreadyExists, NotFound, field_error
from control_plane.domain.principals import Principal
from control_plane.services.context import ServiceContext
from control_plane.services.tenant_crud import TenantCrud
from control_plane.storage import models as m
from control_plane.storage.units import OrgTx

USER_STATES = ("ACTIVE", "SUSPENDED")


def user_view(r: m.User) -> UserView:
    return UserView(
        r.org_id,
        r.id,
        r.external_id,
        r.display_name,
        r.email,
        r.state,
        r.create_time,
        r.update_time,
        tuple(r.groups),
    )


class UserService(TenantCrud[m.User, UserView]):
    model = m.User
    collection = "users"
    repository = "users"

    def __init__(self, ctx: ServiceContext) -> None:
        super().__init__(ctx, user_view)

    async def create(
        self,
        principal: Principal,
        org_id: str,
        external_id: str,
        display_name: str,
        email: str,
        request_id: str,
        groups: list[str] | None = None,
    ) -> UserView:
        fields: dict[str, object] = {
            "external_id": v.external_id(external_id),
            "display_name": v.display_name(display_name, "user.display_name", required=False),
            "email": v.email(email),
            "state": "ACTIVE",
        }
        in_groups = v.groups(groups or [], "user.groups")
        if in_groups:  # absent otherwise: a retry from before groups existed still matches
            fields["groups"] = in_groups

        async def unique_external_id(tx: OrgTx) -> None:
            if await tx.users.find(external_id=fields["external_id"]) is not None:
                raise AlreadyExists(
                    "a user with this external_id already exists",
                    metadata={"field": "user.external_id"},
                )

        row, _ = await self._create(
            principal, org_id, request_id, fields, precheck=unique_external_id
        )
        return user_view(row)

    async def get(self, principal: Principal, org_id: str, user_id: str) -> UserView:
        return await self._get(principal, org_id, user_id)

    async def list(
        self, principal: Principal, org_id: str, page_size: int, page_token: str
    ) -> Page[UserView]:
        return await self._list(principal, org_id, page_size, page_token)

    async def update_status(
        self, principal: Principal, org_id: str, user_id: str, state: str
    ) -> UserView:
        if state not in USER_STATES:
            raise field_error("state", "must be USER_STATE_ACTIVE or USER_STATE_SUSPENDED")

        def mutate(row: m.User, now: dt.datetime) -> None:
            if row.state != state:
                row.state = state
                row.update_time = now

        return await self._update(principal, org_id, user_id, mutate)

    async def update_groups(
        self, principal: Principal, org_id: str, user_id: str, groups: Sequence[str]
    ) -> UserView:
        """Replace the user's groups (tool policy rules can apply per group)."""
        wanted = v.groups(list(groups), "groups")

        def mutate(row: m.User, now: dt.datetime) -> None:
            if list(row.groups) != wanted:
                row.groups = wanted
                row.update_time = now

        return await self._update(principal, org_id, user_id, mutate)

    async def delete(self, principal: Principal, org_id: str, user_id: str) -> None:
        """Delete the user and, in the same transaction, its connected accounts (their
        sealed secrets go with them; grants are not revoked at the provider here)."""
        scope = principal.scope_for(org_id)
        now = self.ctx.clock.now()
        async with self.ctx.db.org_tx(scope) as tx:
            if await tx.users.get(user_id) is None:
                raise NotFound()
            for account in await tx.accounts.owned_by("users", user_id):
                await tx.account_events.record(account.id, account.connector_id, "DELETED", "", now)
                await tx.accounts.delete_row(account)
            await tx.users.delete(user_id)
        self.ctx.identity_changed(scope.org_id)
