"""Organizations: the root of every tenant's data."""

from __future__ import annotations

from control_plane.domain import validation as v
from control_plane.domain.entities import OrganizationView, Page, RateLimitSettings
from control_plane.domain.errors import InvalidArgument, NotFound, PermissionDenied, field_error
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
        row.max_delegation_depth,
        RateLimitSettings(
            row.rate_limit_rps,
            row.rate_limit_burst,
            row.principal_rate_limit_rps,
            row.principal_rate_limit_burst,
        ),
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
MAX_RATE = 10_000_000  # requests per second, and burst size
PATHS = ("display_name", "access_token_ttl", "max_delegation_depth", "rate_limits")


class OrganizationSettings:
    """AIP-134 updates of an organization: display name, access-token lifetime, delegation
    depth, and (platform admins only: they protect the deployment) rate limits."""

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
        rate_limits: RateLimitSettings | None = None,
    ) -> OrganizationView:
        if not paths:
            raise field_error("update_mask", "name the fields to update", "FIELD_REQUIRED")
        unknown = set(paths) - set(PATHS)
        if unknown:
            raise field_error("update_mask", "only " + ", ".join(PATHS))
        limits = None
        if "rate_limits" in paths:
            principal.scope_for(org_id)  # another org's id: NOT_FOUND, as for everything
            if not principal.is_platform_admin:
                raise PermissionDenied("only platform admins change an organization's limits")
            limits = _check_limits(rate_limits or RateLimitSettings())
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
            if limits is not None:
                row.rate_limit_rps = limits.requests_per_second
                row.rate_limit_burst = limits.burst
                row.principal_rate_limit_rps = limits.principal_requests_per_second
                row.principal_rate_limit_burst = limits.principal_burst
            row.update_time = self.ctx.clock.now()
        self.ctx.identity_changed(scope.org_id)
        return org_view(row)


def _check_limits(given: RateLimitSettings) -> RateLimitSettings:
    """0 (or unset) means the deployment's default, stored as NULL."""

    def rate(value: float | None, field: str) -> float | None:
        if not value:
            return None
        if not 0 < value <= MAX_RATE or value != value:
            raise field_error(f"organization.rate_limits.{field}", f"must be 0-{MAX_RATE}")
        return float(value)

    def burst(value: int | None, field: str) -> int | None:
        if not value:
            return None
        if not 0 < value <= MAX_RATE:
            raise field_error(f"organization.rate_limits.{field}", f"must be 0-{MAX_RATE}")
        return int(value)

    return RateLimitSettings(
        rate(given.requests_per_second, "requests_per_second"),
        burst(given.burst, "burst"),
        rate(given.principal_requests_per_second, "principal_requests_per_second"),
        burst(given.principal_burst, "principal_burst"),
    )
