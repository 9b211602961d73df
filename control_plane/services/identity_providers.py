"""Identity providers: the one OIDC issuer whose tokens name an org's users.

The keys are checked like a WORKLOAD_TOKEN trust policy's (OIDC discovery or a
static JWK Set, never both); the issuer and audience are exact strings. A change
reaches the token endpoint through the per-org identity snapshot.
"""

from __future__ import annotations

from control_plane.domain import names, trust
from control_plane.domain import validation as v
from control_plane.domain.entities import IdentityProviderView, Page
from control_plane.domain.errors import AlreadyExists, field_error
from control_plane.domain.identity_provider import (
    IdentityProviderSpec,
    check_issuer,
    check_subject_claim,
)
from control_plane.domain.outbound import OutboundPolicy
from control_plane.domain.principals import Principal
from control_plane.services.context import ServiceContext
from control_plane.services.external_keys import parse_public_jwks
from control_plane.services.tenant_crud import TenantCrud
from control_plane.storage import models as m
from control_plane.storage.units import OrgTx

COLLECTION = "identityProviders"


def idp_view(r: m.IdentityProvider) -> IdentityProviderView:
    return IdentityProviderView(
        r.org_id,
        r.id,
        r.issuer,
        r.discovery_url,
        r.jwks_json,
        r.audience,
        r.subject_claim,
        dict(r.claim_equals),
        tuple(r.algorithms),
        r.create_time,
    )


class IdentityProviderService(TenantCrud[m.IdentityProvider, IdentityProviderView]):
    model = m.IdentityProvider
    collection = COLLECTION
    repository = "identity_providers"

    def __init__(self, ctx: ServiceContext, own_issuer: str, outbound: OutboundPolicy) -> None:
        super().__init__(ctx, idp_view)
        self.own_issuer = own_issuer
        self.outbound = outbound  # discovery_url is fetched later: refused now if it can be

    async def create(
        self, principal: Principal, org_id: str, spec: IdentityProviderSpec, request_id: str
    ) -> IdentityProviderView:
        principal.scope_for(org_id)  # permission before anything about the request
        fields = self._validate(spec)

        async def only_one(tx: OrgTx) -> None:
            if await tx.identity_providers.find() is not None:
                raise AlreadyExists("the organization already has an identity provider")

        row, created = await self._create(principal, org_id, request_id, fields, precheck=only_one)
        if created:
            self.ctx.identity_changed(org_id)
        return idp_view(row)

    async def get(self, principal: Principal, name: str) -> IdentityProviderView:
        n = names.parse_child(name, COLLECTION)
        return await self._get(principal, n.org_id, n.id)

    async def list(
        self, principal: Principal, org_id: str, page_size: int, page_token: str
    ) -> Page[IdentityProviderView]:
        return await self._list(principal, org_id, page_size, page_token)

    async def delete(self, principal: Principal, name: str) -> None:
        n = names.parse_child(name, COLLECTION)
        await self._delete(principal, n.org_id, n.id)  # also drops the identity snapshot

    def _validate(self, spec: IdentityProviderSpec) -> dict[str, object]:
        f = "identity_provider."
        issuer = check_issuer(v.text(spec.issuer, f + "issuer", max_len=2048), f + "issuer")
        if issuer.rstrip("/") == self.own_issuer.rstrip("/"):
            raise field_error(f + "issuer", "our own tokens are not user assertions")
        if bool(spec.discovery_url) == bool(spec.jwks_json):
            raise field_error(f + "discovery_url", "give exactly one of discovery_url, jwks_json")
        if spec.discovery_url:
            self.outbound.check_url(spec.discovery_url, f + "discovery_url")
        else:
            if len(spec.jwks_json) > 64 * 1024:
                raise field_error(f + "jwks_json", "is too long", "FIELD_TOO_LONG")
            parse_public_jwks(spec.jwks_json, f + "jwks_json")
        if not spec.audience:
            raise field_error(f + "audience", "is required", "FIELD_REQUIRED")
        if not trust.AUDIENCE.fullmatch(spec.audience) or "*" in spec.audience:
            raise field_error(f + "audience", "is one exact printable string, no wildcards")
        algorithms = list(spec.algorithms or trust.DEFAULT_ALGORITHMS)
        if not set(algorithms) <= trust.EXTERNAL_ALGORITHMS:
            raise field_error(
                f + "algorithms", "unsupported algorithm (none/HS* are never allowed)"
            )
        return {
            "issuer": issuer,
            "discovery_url": spec.discovery_url,
            "jwks_json": spec.jwks_json,
            "audience": spec.audience,
            "subject_claim": check_subject_claim(spec.subject_claim, f + "subject_claim"),
            "claim_equals": trust.check_claim_equals(spec.claim_equals, f + "claim_equals"),
            "algorithms": sorted(set(algorithms)),
        }
