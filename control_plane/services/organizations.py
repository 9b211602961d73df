"""Organizations: the root of every tenant's data."""

from __future__ import annotations

from control_plane.domain import validation as v
from control_plane.domain.entities import OrganizationView, Page
from control_plane.domain.errors import InvalidArgument, NotFound, field_error
from control_plane.domain.principals import Principal
from control_plane.ids import new_id
from control_plane.services.context import ServiceContext, make_page
from control_plane.storage import models as m
from control_plane.vault.barrier import PLATFORM

DEFAULT_SERVICE_ACCOUNT = "default"


def org_view(row: m.Organization) -> OrganizationView:
    return OrganizationView(
        row.id,
        row.display_name,
        row.state,
        row.create_time,
        row.update_time,
        row.access_token_ttl_seconds,
    )


class OrganizationService:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    async def create(
        self, principal: Principal, display_name: str, request_id: str
    ) -> OrganizationView:
        """Creates the org, its data key and its default service account atomically."""
        display_name = v.display_name(display_name, "organization.display_name")
        rid = v.request_id(request_id)
        fp = v.fingerprint({"display_name": display_name})
        if rid is not None:
            async with self.ctx.db.platform_tx() as ptx:
                existing = await ptx.orgs.find(request_id=rid)
            if existing is not None:
                if existing.request_fingerprint != fp:
                    raise InvalidArgument(
                        "request_id was already used for a different request",
                        reason="REQUEST_ID_REUSED",
                        metadata={"field": "request_id"},
                    )
                return org_view(existing)
        now = self.ctx.clock.now()
        org_id = new_id()
        scope = principal.scope_for(org_id)  # a platform admin's: the org is new
        async with self.ctx.db.org_tx(scope) as tx:
            row = m.Organization(
                id=org_id,
                display_name=display_name,
                state="ACTIVE",
                request_id=rid,
                request_fingerprint=fp if rid else None,
                create_time=now,
                update_time=now,
                access_token_ttl_seconds=300,
                max_delegation_depth=4,
            )
            await tx.create_org(row)
            await self.ctx.barrier.create_org_key(tx, scope)
            await tx.service_accounts.add(
                m.ServiceAccount(
                    org_id=org_id,
                    id=new_id(),
                    display_name="Default service account",
                    purpose=DEFAULT_SERVICE_ACCOUNT,
                    state="ACTIVE",
                    create_time=now,
                    update_time=now,
                )
            )
        return org_view(row)

    async def get(self, principal: Principal, org_id: str) -> OrganizationView:
        async with self.ctx.db.org_tx(principal.scope_for(org_id)) as tx:
            row = await tx.org()
        if row is None:
            raise NotFound()
        return org_view(row)

    async def list(
        self, principal: Principal, page_size: int, page_token: str
    ) -> Page[OrganizationView]:
        """Platform admins see every org; an org admin sees its own."""
        size = v.page_size(page_size)
        if not principal.is_platform_admin:
            if page_token:
                raise InvalidArgument(
                    "page_token: is not a page token for this list",
                    reason="INVALID_PAGE_TOKEN",
                    metadata={"field": "page_token"},
                )
            assert principal.org_id is not None
            return Page([await self.get(principal, principal.org_id)], "")
        cursor = await self.ctx.page_tokens.decode(PLATFORM, "organizations", page_token)
        async with self.ctx.db.platform_tx() as tx:
            rows = await tx.orgs.page(cursor, size + 1)
        return await make_page(self.ctx, PLATFORM, "organizations", rows, size, org_view)

    async def delete(self, principal: Principal, org_id: str) -> None:
        """Deletes every row of the org and destroys its data keys (crypto-shredding)."""
        scope = principal.scope_for(org_id)
        async with self.ctx.db.org_tx(scope) as tx:
            if not await tx.org_exists():
                raise NotFound()
            await self.ctx.barrier.destroy_org_keys(tx, scope)
            await tx.delete_org()
        self.ctx.identity_changed(scope.org_id)


MIN_TOKEN_TTL = 60
MAX_DEPTH = 8
MAX_TOKEN_TTL = 900


class OrganizationSettings:
    """AIP-134 updates of an organization (display name, access-token lifetime)."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    async def update(
        self,
        principal: Principal,
        org_id: str,
        paths: list[str],
        display_name: str,
        token_ttl_seconds: float | None,
        max_delegation_depth: int = 0,
    ) -> OrganizationView:
        if not paths:
            raise field_error("update_mask", "name the fields to update", "FIELD_REQUIRED")
        unknown = set(paths) - {"display_name", "access_token_ttl", "max_delegation_depth"}
        if unknown:
            raise field_error(
                "update_mask", "only display_name, access_token_ttl and max_delegation_depth"
            )
        if "max_delegation_depth" in paths and not 1 <= max_delegation_depth <= MAX_DEPTH:
            raise field_error(
                "organization.max_delegation_depth", f"must be between 1 and {MAX_DEPTH}"
            )
        if "display_name" in paths:
            display_name = v.display_name(display_name, "organization.display_name")
        ttl = 0
        if "access_token_ttl" in paths:
            if token_ttl_seconds is None or not MIN_TOKEN_TTL <= token_ttl_seconds <= MAX_TOKEN_TTL:
                raise field_error(
                    "organization.access_token_ttl", "must be between 60 s and 15 min"
                )
            ttl = int(token_ttl_seconds)
        scope = principal.scope_for(org_id)
        async with self.ctx.db.org_tx(scope) as tx:
            row = await tx.org()
            if row is None:
                raise NotFound()
            if "display_name" in paths:
                row.display_name = display_name
            if ttl:
                row.access_token_ttl_seconds = ttl
            if "max_delegation_depth" in paths:
                row.max_delegation_depth = max_delegation_depth
            row.update_time = self.ctx.clock.now()
        self.ctx.identity_changed(scope.org_id)
        return org_view(row)
