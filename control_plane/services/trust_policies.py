"""Trust policies: per agent, who may become it and what it may then be granted."""

from __future__ import annotations

from control_plane.domain import names, trust
from control_plane.domain import validation as v
from control_plane.domain.entities import Page, TrustPolicyView
from control_plane.domain.errors import NotFound, field_error
from control_plane.domain.outbound import OutboundPolicy
from control_plane.domain.principals import Principal
from control_plane.domain.trust import TrustPolicySpec
from control_plane.services.context import ServiceContext, get_or_404, list_page
from control_plane.services.external_keys import parse_public_jwks
from control_plane.services.tenant_crud import TenantCrud
from control_plane.storage import models as m
from control_plane.storage.units import OrgTx


def policy_view(r: m.TrustPolicy) -> TrustPolicyView:
    return TrustPolicyView(
        r.org_id,
        r.agent_id,
        r.id,
        r.kind,
        r.issuer,
        r.discovery_url,
        r.jwks_json,
        r.audience,
        r.subject,
        r.subject_pattern,
        dict(r.claim_equals),
        tuple(r.algorithms),
        tuple(r.service_account_ids),
        tuple(r.scopes),
        tuple(r.audiences),
        r.create_time,
    )


class TrustPolicyService(TenantCrud[m.TrustPolicy, TrustPolicyView]):
    model = m.TrustPolicy
    collection = "trustPolicies"
    repository = "trust_policies"

    def __init__(self, ctx: ServiceContext, own_issuer: str, outbound: OutboundPolicy) -> None:
        super().__init__(ctx, policy_view)
        self.own_issuer = own_issuer
        self.outbound = outbound  # discovery_url is fetched later: refused now if it can be

    async def create(
        self,
        principal: Principal,
        agent: names.OrgChildName,
        spec: TrustPolicySpec,
        request_id: str,
    ) -> TrustPolicyView:
        fields = self._validate(agent.org_id, spec)
        sa_ids: list[str] = list(fields["service_account_ids"])  # type: ignore[call-overload]

        async def references_exist(tx: OrgTx) -> None:
            if await tx.agents.get(agent.id) is None:
                raise NotFound()
            for sa_id in sa_ids:
                if await tx.service_accounts.get(sa_id) is None:
                    raise field_error(
                        "trust_policy.service_accounts",
                        "names a service account that does not exist",
                    )

        fields["agent_id"] = agent.id
        row, _ = await self._create(
            principal, agent.org_id, request_id, fields, precheck=references_exist
        )
        self.ctx.identity_changed(agent.org_id)
        return policy_view(row)

    async def get(self, principal: Principal, name: str) -> TrustPolicyView:
        n = _parse_policy_name(name)
        async with self.ctx.db.org_tx(principal.scope_for(n[0])) as tx:
            row = await get_or_404(tx.trust_policies, n[2])
        if row.agent_id != n[1]:
            raise NotFound()
        return policy_view(row)

    async def list(
        self, principal: Principal, agent: names.OrgChildName, page_size: int, page_token: str
    ) -> Page[TrustPolicyView]:
        size = v.page_size(page_size)
        async with self.ctx.db.org_tx(principal.scope_for(agent.org_id)) as tx:
            if await tx.agents.get(agent.id) is None:
                raise NotFound()
            return await list_page(
                self.ctx,
                tx,
                tx.trust_policies,
                f"trustPolicies/{agent.id}",
                size,
                page_token,
                policy_view,
                agent_id=agent.id,
            )

    async def delete(self, principal: Principal, name: str) -> None:
        org_id, agent_id, policy_id = _parse_policy_name(name)
        await self.get(principal, name)  # NOT_FOUND for another agent's policy
        await self._delete(principal, org_id, policy_id)

    # ------------------------------------------------------------------ rules

    def _validate(self, org_id: str, spec: TrustPolicySpec) -> dict[str, object]:
        f = "trust_policy."
        kind = spec.kind
        if kind not in trust.KINDS:
            raise field_error(f + "kind", "must be WORKLOAD_TOKEN or PRIVATE_KEY_JWT")
        text = {
            "issuer": spec.issuer,
            "discovery_url": spec.discovery_url,
            "jwks_json": spec.jwks_json,
            "audience": spec.audience,
            "subject": spec.subject,
            "subject_pattern": spec.subject_pattern,
        }
        for k in ("issuer", "audience", "subject", "subject_pattern"):
            v.text(text[k], f + k, max_len=2048)
        claim_equals = trust.check_claim_equals(spec.claim_equals, f + "claim_equals")
        if kind == "WORKLOAD_TOKEN":
            if bool(text["discovery_url"]) == bool(text["jwks_json"]):
                raise field_error(
                    f + "discovery_url", "give exactly one of discovery_url, jwks_json"
                )
            if text["discovery_url"]:
                self.outbound.check_url(text["discovery_url"], f + "discovery_url")
                if not text["issuer"]:
                    raise field_error(
                        f + "issuer", "is required with discovery_url", "FIELD_REQUIRED"
                    )
            if not text["audience"]:
                raise field_error(f + "audience", "is required", "FIELD_REQUIRED")
            if not (text["subject"] or text["subject_pattern"] or claim_equals):
                raise field_error(
                    f + "subject",
                    "pin the workload: set subject, subject_pattern or claim_equals",
                    "FIELD_REQUIRED",
                )
            if text["issuer"] and text["issuer"].rstrip("/") == self.own_issuer.rstrip("/"):
                raise field_error(f + "issuer", "our own tokens are not workload credentials")
        else:
            if not text["jwks_json"]:
                raise field_error(f + "jwks_json", "is required", "FIELD_REQUIRED")
            for k in ("issuer", "discovery_url", "audience", "subject", "subject_pattern"):
                if text[k]:
                    raise field_error(f + k, "does not apply to PRIVATE_KEY_JWT")
            if claim_equals:
                raise field_error(f + "claim_equals", "does not apply to PRIVATE_KEY_JWT")
        if text["jwks_json"]:
            if len(text["jwks_json"]) > 64 * 1024:
                raise field_error(f + "jwks_json", "is too long", "FIELD_TOO_LONG")
            parse_public_jwks(text["jwks_json"], f + "jwks_json")
        algorithms = list(spec.algorithms or trust.DEFAULT_ALGORITHMS)
        if not set(algorithms) <= trust.EXTERNAL_ALGORITHMS:
            raise field_error(
                f + "algorithms", "unsupported algorithm (none/HS* are never allowed)"
            )
        sa_names = spec.service_accounts
        if not sa_names or len(sa_names) > trust.MAX_ITEMS:
            raise field_error(f + "service_accounts", "1-64 service accounts", "FIELD_REQUIRED")
        sa_ids = []
        for name in sa_names:
            parsed = names.parse_child(str(name), "serviceAccounts", f + "service_accounts")
            if parsed.org_id != org_id:
                raise field_error(f + "service_accounts", "must be in the policy's organization")
            sa_ids.append(parsed.id)
        return {
            "kind": kind,
            **text,
            "claim_equals": claim_equals,
            "algorithms": sorted(set(algorithms)),
            "service_account_ids": sorted(set(sa_ids)),
            "scopes": trust.check_scopes(spec.scopes, f + "scopes"),
            "audiences": trust.check_audiences(spec.audiences, f + "audiences"),
        }


def _parse_policy_name(name: str) -> tuple[str, str, str]:
    prefix, sep, policy = name.rpartition("/trustPolicies/")
    if not sep:
        raise field_error(
            "name",
            f"must look like orgs/{{org}}/agents/{{agent}}/trustPolicies/{{id}} {names.IDS_ARE}",
            "INVALID_RESOURCE_NAME",
        )
    agent = names.parse_child(prefix, "agents")
    if not names.is_hex_id(policy):
        raise field_error(
            "name",
            f"must look like orgs/{{org}}/agents/{{agent}}/trustPolicies/{{id}} {names.IDS_ARE}",
            "INVALID_RESOURCE_NAME",
        )
    return agent.org_id, agent.id, policy
